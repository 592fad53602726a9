// The PondSocket admin page: polls {admin_path}/api/state about once a second and renders
// it. Channel names, user ids, presence and errors come from clients: they only ever reach
// the page as text nodes (textContent), never as HTML.
(() => {
  'use strict';

  const API = new URL('api/', new URL('.', document.currentScript.src)); // {admin_path}/api/
  const TOKEN_KEY = 'pondsocket-admin-token';
  const POLL_MS = 1000;
  const RATES = [
    ['messages_received', 'Client messages received'],
    ['fanout_broadcast_frames', 'Broadcast frames sent'],
    ['fanout_presence_frames', 'Presence frames sent'],
    ['connections_accepted', 'Connections accepted'],
    ['connections_declined', 'Connections declined'],
    ['joins_declined', 'Joins declined'],
    ['rate_limited', 'Messages rate limited'],
    ['protocol_errors', 'Protocol errors'],
    ['handler_errors', 'Handler errors'],
    ['frames_dropped', 'Frames dropped'],
    ['slow_consumer_closes', 'Slow consumers closed'],
    ['cluster_published', 'Cluster envelopes sent'],
    ['cluster_received', 'Cluster envelopes received'],
  ];

  const $ = (id) => document.getElementById(id);
  let selected = null; // {endpoint, name}: the channel whose members are listed
  let previous = null; // the last state, for rates
  let timer = null;
  let inFlight = false;
  let again = false;
  let stopped = false;

  class Unauthorized extends Error {}

  // An element with text children only: strings become text nodes, never markup.
  function el(tag, options, ...children) {
    const node = document.createElement(tag);
    const { className, title, data, onClick } = options || {};
    if (className) node.className = className;
    if (title) node.title = title;
    if (data) Object.assign(node.dataset, data);
    if (onClick) node.addEventListener('click', onClick);
    node.append(...children.map((c) => (c instanceof Node ? c : String(c ?? ''))));
    return node;
  }

  function table(id, heads, rows, empty) {
    // A column of numbers is right-aligned, its heading too.
    const first = rows[0] ? [...rows[0].children] : [];
    const numeric = (i) => Boolean(first[i] && first[i].classList.contains('num'));
    const head = el('thead', null, el('tr', null,
      ...heads.map((h, i) => el('th', { className: numeric(i) ? 'num' : '' }, h))));
    const body = el('tbody');
    if (rows.length === 0) {
      const cell = el('td', { className: 'empty' }, empty);
      cell.colSpan = heads.length;
      body.append(el('tr', null, cell));
    }
    body.append(...rows);
    $(id).replaceChildren(head, body);
  }

  function bytes(n) {
    if (n === null || n === undefined) return '–';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function bounded(note, list, what) {
    $(note).textContent = list.total > list.items.length
      ? `Showing the first ${list.items.length} of ${list.total} ${what}.`
      : '';
  }

  async function api(method, name, params) {
    const url = new URL(name, API);
    for (const [key, value] of Object.entries(params || {})) url.searchParams.set(key, value);
    const headers = { 'X-Pond-Admin': '1' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { method, headers, cache: 'no-store', credentials: 'same-origin' });
    if (response.status === 401) throw new Unauthorized();
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  function setStatus(text, bad) {
    $('status').textContent = text;
    $('status').classList.toggle('bad', Boolean(bad));
  }

  function showLogin(message) {
    stopped = true;
    clearTimeout(timer);
    $('dashboard').hidden = true;
    $('signout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message;
    setStatus('');
    $('token').focus();
  }

  function showDashboard() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  // One poll at a time; a refresh asked for meanwhile runs right after it.
  function refresh() {
    stopped = false;
    clearTimeout(timer);
    if (inFlight) {
      again = true;
      return;
    }
    poll();
  }

  async function poll() {
    inFlight = true;
    try {
      const params = {};
      if (selected) Object.assign(params, { endpoint: selected.endpoint, channel: selected.name });
      const filter = $('filter').value;
      if (filter) params.filter = filter;
      const state = await api('GET', 'state', params);
      showDashboard();
      render(state);
      setStatus(`live · updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error instanceof Unauthorized) {
        const had = sessionStorage.getItem(TOKEN_KEY);
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(had ? 'The token was refused.' : '');
      } else {
        setStatus(`cannot reach the node (${error.message}); retrying`, true);
      }
    } finally {
      inFlight = false;
    }
    if (again) {
      again = false;
      refresh();
    } else if (!stopped) {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  function render(state) {
    $('node').textContent = `node ${state.node.id}`;
    $('ready').textContent = state.node.notReady ? `not ready: ${state.node.notReady}` : 'ready';
    $('ready').classList.toggle('bad', Boolean(state.node.notReady));
    renderNodes(state);
    renderRates(state);
    renderChannels(state.channels);
    renderMembers(state.members);
    renderConnections(state.connections);
    renderErrors(state.errors);
    previous = state;
  }

  function renderNodes(state) {
    const rows = state.nodes.map((n) => el('tr', null,
      el('td', { className: 'mono' }, n.id),
      el('td', null, n.self ? `this node (${state.node.pubsub})` : 'peer'),
      el('td', null, n.self ? '–' : `${n.lastHeard.toFixed(1)} s ago`)));
    table('nodes', ['Node', 'Role', 'Last heard'], rows, 'no nodes');
  }

  function renderRates(state) {
    const span = previous ? state.clock - previous.clock : 0;
    const rows = RATES.map(([key, label]) => {
      const total = state.counters[key];
      const rate = span > 0 ? Math.max(0, total - previous.counters[key]) / span : null;
      return el('tr', null, el('td', null, label),
        el('td', { className: 'num' }, rate === null ? '…' : `${rate.toFixed(1)}/s`),
        el('td', { className: 'num' }, total));
    });
    table('rates', ['Counter', 'Rate', 'Total'], rows, '');
  }

  function isSelected(c) {
    return selected !== null && selected.endpoint === c.endpoint && selected.name === c.name;
  }

  function renderChannels(channels) {
    $('channels-count').textContent = `(${channels.total})`;
    bounded('channels-note', channels, 'channels, busiest first');
    const rows = channels.items.map((c) => {
      const choose = () => {
        selected = { endpoint: c.endpoint, name: c.name };
        refresh();
      };
      const name = el('button', { className: 'link', title: 'Show its members', onClick: choose }, c.name);
      return el('tr', { className: isSelected(c) ? 'selected' : '', data: { channel: c.name } },
        el('td', null, c.endpoint), el('td', null, name),
        el('td', { className: 'num members' }, c.members), el('td', { className: 'num' }, c.local),
        el('td', { className: 'num' }, c.presence));
    });
    table('channels', ['Endpoint', 'Channel', 'Members', 'Here', 'Presence'], rows,
      'no channel open on this node');
  }

  function renderMembers(members) {
    $('members-card').hidden = members === null;
    if (members === null) return;
    $('members-name').textContent = members.name;
    $('members-count').textContent = members.open ? `(${members.total})` : '(closed)';
    bounded('members-note', members, 'members');
    const rows = members.items.map((m) => {
      const evict = async () => {
        if (!window.confirm(`Evict ${m.id} from ${members.name}?`)) return;
        await act('evict', { endpoint: members.endpoint, channel: members.name, user: m.id },
          `evicted ${m.id} from ${members.name}`);
      };
      return el('tr', { data: { user: m.id } },
        el('td', { className: 'mono' }, m.id),
        el('td', { className: 'mono' }, m.local ? 'this node' : (m.node ?? 'another node')),
        el('td', { className: 'mono presence' }, m.presence ?? 'not tracked'),
        el('td', { className: 'num' }, bytes(m.queueBytes)),
        el('td', null, el('button', { className: 'danger', onClick: evict }, 'Evict')));
    });
    table('members', ['User', 'Node', 'Presence', 'Queue', ''], rows,
      members.open ? 'no members' : 'this channel is no longer open on this node');
  }

  function renderConnections(connections) {
    $('connections-count').textContent = `(${connections.total})`;
    bounded('connections-note', connections, 'connections, fullest queues first');
    const rows = connections.items.map((c) => {
      const close = async () => {
        if (!window.confirm(`Close connection ${c.id}?`)) return;
        await act('close', { connection: c.id }, `closed ${c.id}`);
      };
      const meter = el('meter', { title: `of ${bytes(connections.queueLimit)}` });
      meter.max = connections.queueLimit;
      meter.value = c.queueBytes ?? 0;
      return el('tr', { data: { connection: c.id } },
        el('td', { className: 'mono' }, c.id), el('td', null, c.endpoint),
        el('td', { className: 'mono' }, c.address ?? '–'), el('td', { className: 'num' }, c.channels),
        el('td', { className: 'num' }, bytes(c.queueBytes), ' ', meter),
        el('td', null, el('button', { className: 'danger', onClick: close }, 'Close')));
    });
    table('connections', ['Connection', 'Endpoint', 'Address', 'Channels', 'Queue', ''], rows,
      'no connection open on this node');
  }

  function renderErrors(errors) {
    const rows = errors.map((e) => el('tr', null,
      el('td', null, new Date(e.time * 1000).toLocaleTimeString()), el('td', null, e.kind),
      el('td', { className: 'mono' }, e.where), el('td', { className: 'mono' }, e.error),
      el('td', { className: 'num' }, e.count > 1 ? `×${e.count}` : '')));
    table('errors', ['Time', 'Kind', 'Where', 'Error', ''], rows, 'none since the node started');
  }

  let toastTimer = null;

  function toast(text) {
    $('action').textContent = text;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { $('action').textContent = ''; }, 8000);
  }

  async function act(name, params, done) {
    try {
      await api('POST', name, params);
      toast(done);
    } catch (error) {
      if (error instanceof Unauthorized) showLogin('The token was refused.');
      else toast(`${name} failed: ${error.message}`);
    }
    refresh();
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    $('token').value = '';
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login-error').textContent = '';
    refresh();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('Signed out.');
  });
  $('filter').addEventListener('input', refresh);
  refresh(); // without a token first: the app's own check (admin_auth) may admit us
})();
