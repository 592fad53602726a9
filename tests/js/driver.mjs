// Test driver for the REAL published PondSocket JavaScript client
// (@eleven-am/pondsocket-client 0.0.32, pinned in ./package.json).
//
// Protocol (see tests/jsclient.py for the Python side):
//   stdin  : one JSON command per line, e.g. {"id":"1","cmd":"join","client":"a","channel":"/x"}
//   stdout : one JSON object per line, either a command result
//              {"type":"result","id":"1","ok":true,"value":...}
//              {"type":"result","id":"1","ok":false,"error":"...", "code":"...", ...}
//            or an asynchronous event ({"type":"message"|"presence"|"users"|"channel_state"|
//            "connection"|"error"|"declined"|"handshake_error"|"socket_close"|"frame"|"fatal", ...}).
//   stderr : free-form logs.
//
// Nothing but those JSON lines may ever reach stdout, so console.log & co are redirected to
// stderr before the client library is loaded (its `websocket` dependency logs via `debug`,
// which already writes to stderr).
//
// Everything the tests observe goes through the client's public API (onMessage, onJoin, ...).
// Three things need the client's underscore-prefixed (not #private) internals, because 0.0.32
// exposes no public way to get at them; each use is marked "INTERNAL" below:
//   * the decline payload (Channel.decline() drops it): tapped from client._broadcaster;
//   * socket-level facts (handshake failure reason, close code, raw frames) and `drop`:
//     reached through client._socket, the `websocket` package's W3CWebSocket;
//   * `drop` with reconnect:false sets client._disconnecting, the flag disconnect() uses.

import { createRequire } from 'node:module';
import readline from 'node:readline';

const log = (...args) => console.error('[driver]', ...args);
console.log = log;
console.info = log;
console.debug = log;

const require = createRequire(import.meta.url);
// On Node (no `window`), the package's entry point selects its node/ PondClient, which gets its
// WebSocket from the `websocket` npm package (require('websocket').w3cwebsocket). No
// globalThis.WebSocket is needed or used, so Node 20 works without flags or polyfills.
const { PondClient, ChannelState, ConnectionState } = require('@eleven-am/pondsocket-client');

const DEFAULT_TIMEOUT_MS = 5000;
const SOCKET_CLOSED = 3; // W3C WebSocket readyState CLOSED
const SOCKET_OPEN = 1;

// ---------------------------------------------------------------------------------------------
// Output

function emit(obj) {
  // JSON.stringify escapes newlines inside strings, so one object is always exactly one line.
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// If the Python side goes away, there is nobody left to report to.
process.stdout.on('error', () => process.exit(0));

function describeError(err) {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  try {
    return typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    return String(err);
  }
}

// A frame the client's schema rejects throws inside the socket's message handler, i.e. outside
// any promise we own. Report it instead of dying, so a test can assert on it; the process keeps
// running (that is also what a long-lived app with such a handler would experience).
process.on('uncaughtException', (err) => {
  log('uncaughtException', err?.stack ?? err);
  emit({ type: 'fatal', kind: 'uncaughtException', error: describeError(err) });
});
process.on('unhandledRejection', (reason) => {
  log('unhandledRejection', reason?.stack ?? reason);
  emit({ type: 'fatal', kind: 'unhandledRejection', error: describeError(reason) });
});

class CommandError extends Error {
  // `extra` fields are merged into the failed result line (e.g. code, payload, state).
  constructor(message, extra = {}) {
    super(message);
    this.extra = extra;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait on a pondsocket Subject/BehaviorSubject. `decide(value)` returns undefined to keep
 * waiting, {value} to resolve, {error} (a CommandError) to reject, or {later: () => outcome} to
 * settle with that outcome one microtask later.
 * BehaviorSubject.subscribe calls the observer synchronously with the current value BEFORE it
 * returns the unsubscribe function, hence the `settled` bookkeeping.
 */
function waitOn(subscribe, decide, timeoutMs, onTimeout) {
  return new Promise((resolve, reject) => {
    let settled = false;
    let unsubscribe = null;
    const settle = (outcome) => {
      if (settled) return;
      if (outcome.later) {
        // Stop looking at new values now, decide a microtask later.
        settled = true;
        queueMicrotask(() => {
          settled = false;
          settle(outcome.later());
        });
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (unsubscribe) unsubscribe();
      if ('error' in outcome) reject(outcome.error);
      else resolve(outcome.value);
    };
    const timer = setTimeout(() => settle({ error: onTimeout() }), timeoutMs);
    unsubscribe = subscribe((value) => {
      const outcome = decide(value);
      if (outcome) settle(outcome);
    });
    if (settled) unsubscribe();
  });
}

async function waitUntil(condition, timeoutMs, intervalMs = 10) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
  return true;
}

function withTimeout(promise, timeoutMs, makeError) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(makeError()), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function readPresence(channel) {
  // index.d.ts declares `presence(): Presence[]`, but 0.0.32 implements it as a getter.
  const presence = typeof channel.presence === 'function' ? channel.presence() : channel.presence;
  return presence ?? [];
}

// ---------------------------------------------------------------------------------------------
// State: named clients, each with the channels the driver has joined through it.

/** @type {Map<string, {name: string, client: any, channels: Map<string, any>, raw: boolean, lastHandshakeError: string|null, lastDecline: Map<string, any>, retired: boolean}>} */
const clients = new Map();

function getClient(name) {
  const entry = clients.get(name);
  if (!entry) throw new CommandError(`unknown client ${JSON.stringify(name)}`, { code: 'UNKNOWN_CLIENT' });
  return entry;
}

function getChannel(entry, channelName) {
  const ch = entry.channels.get(channelName);
  if (!ch) {
    throw new CommandError(
      `client ${JSON.stringify(entry.name)} has no channel ${JSON.stringify(channelName)} (join it first)`,
      { code: 'UNKNOWN_CHANNEL' },
    );
  }
  return ch;
}

/** Hook one W3CWebSocket created by the client (every (re)connect creates a new one). */
function instrumentSocket(entry, ws) {
  if (!ws) return;
  const client = entry.name;
  // INTERNAL: ws._client is the `websocket` package's WebSocketClient. Its connectFailed error
  // carries the real reason (e.g. "Server responded with a non-101 status: 403 Forbidden"),
  // which the W3C wrapper and PondClient both discard ("WebSocket error"). prependListener so
  // this is reported before the resulting state changes.
  ws._client?.prependListener('connectFailed', (err) => {
    // First line only: for a non-101 answer the library appends all response headers.
    entry.lastHandshakeError = describeError(err).split('\n')[0];
    emit({ type: 'handshake_error', client, error: entry.lastHandshakeError });
  });
  if (entry.raw) {
    // Raw text of every WebSocket message, before the client parses (and maybe rejects) it.
    ws._client?.on('connect', (connection) => {
      connection.prependListener('message', (message) => {
        emit({
          type: 'frame',
          client,
          data: message.type === 'utf8' ? message.utf8Data : null,
          binary: message.type !== 'utf8',
        });
      });
    });
  }
  ws.addEventListener('close', (event) => {
    emit({ type: 'socket_close', client, code: event.code, reason: event.reason, wasClean: event.wasClean });
  });
}

function subscribeChannel(entry, channelName, channel) {
  const client = entry.name;
  const base = { client, channel: channelName };
  const unsubscribers = [
    // Note: onMessage also sees the SYSTEM/ACKNOWLEDGE frame that completes the join
    // (event "ACKNOWLEDGE", payload {}), because of how 0.0.32 wires the channel up.
    channel.onMessage((event, payload) => emit({ type: 'message', ...base, event, payload })),
    channel.onJoin((changed) => emit({ type: 'presence', ...base, kind: 'join', payload: changed })),
    channel.onLeave((changed) => emit({ type: 'presence', ...base, kind: 'leave', payload: changed })),
    // onPresenceChange (UPDATE only) receives the whole {changed, presence} payload.
    channel.onPresenceChange((payload) => emit({ type: 'presence', ...base, kind: 'change', payload })),
    channel.onUsersChange((presence) => emit({ type: 'users', ...base, presence })),
    channel.onChannelStateChange((state) => emit({ type: 'channel_state', ...base, state })),
  ];
  return { name: channelName, channel, unsubscribe: () => unsubscribers.forEach((u) => u()) };
}

/**
 * What docs/recovery.md tells an app to do: the client resends the same join-params object on
 * every automatic rejoin, so keep its `recover` at the last position seen (every recorded
 * broadcast carries `payload._position`; the `recovery` signal after a join gives the start).
 */
function trackPosition(channel, params) {
  channel.onMessage((event, payload) => {
    if (payload && payload._position) {
      params.recover = payload._position;
    } else if (event === 'recovery' && payload && payload.epoch) {
      params.recover = { offset: payload.offset, epoch: payload.epoch };
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Commands

async function cmdConnect(msg) {
  const { client: name, url, params = {}, options = {}, raw = false } = msg;
  const timeout = msg.timeout ?? DEFAULT_TIMEOUT_MS;
  if (typeof name !== 'string' || !name) throw new CommandError('connect needs a "client" name');
  if (typeof url !== 'string') throw new CommandError('connect needs a "url"');
  const existing = clients.get(name);
  if (existing && existing.client.getState() !== ConnectionState.DISCONNECTED) {
    throw new CommandError(`client ${JSON.stringify(name)} already exists and is not disconnected`);
  }
  if (existing) {
    existing.retired = true; // the old one must never reconnect behind our back
    existing.channels.forEach((ch) => ch.unsubscribe());
  }

  const client = new PondClient(url, params, options);
  const entry = {
    name,
    client,
    channels: new Map(),
    raw: Boolean(raw),
    lastHandshakeError: null,
    lastDecline: new Map(),
    retired: false,
  };
  clients.set(name, entry);

  client.onConnectionChange((state) => emit({ type: 'connection', client: name, state }));
  client.onError((err) => emit({ type: 'error', client: name, error: describeError(err) }));
  // INTERNAL: 0.0.32's Channel.decline(payload) throws the payload away; keep it from the
  // parsed-frame stream so `join` can report it. This subscriber runs after the client's own
  // (registered in its constructor), i.e. after the channel has already become DECLINED.
  client._broadcaster.subscribe((frame) => {
    if (frame.event === 'UNAUTHORIZED') {
      entry.lastDecline.set(frame.channelName, frame.payload);
      emit({ type: 'declined', client: name, channel: frame.channelName, payload: frame.payload });
    }
  });

  // Every reconnect (scheduled internally via this.connect()) goes through this wrapper, so each
  // new socket is instrumented too.
  // `retired` turns it into a no-op: 0.0.32's disconnect() does not cancel a reconnect that is
  // already scheduled (and connect() clears the disconnecting flag), so a client given up on
  // while in back-off would otherwise come back.
  const originalConnect = client.connect.bind(client);
  client.connect = () => {
    if (entry.retired) return;
    originalConnect();
    instrumentSocket(entry, client._socket);
  };
  client.connect();

  try {
    await waitOn(
      (cb) => client.onConnectionChange(cb),
      (state) => (state === ConnectionState.CONNECTED ? { value: { state } } : undefined),
      timeout,
      () =>
        new CommandError(
          `client ${JSON.stringify(name)} not connected within ${timeout} ms` +
            (entry.lastHandshakeError ? ` (last handshake error: ${entry.lastHandshakeError})` : ''),
          { code: 'TIMEOUT', state: client.getState(), handshake_error: entry.lastHandshakeError },
        ),
    );
  } catch (err) {
    // The client would otherwise retry for ever in the background; stop it for good.
    entry.retired = true;
    client.disconnect();
    throw err;
  }
  return { state: client.getState() };
}

async function cmdJoin(msg) {
  const entry = getClient(msg.client);
  const channelName = msg.channel;
  const timeout = msg.timeout ?? DEFAULT_TIMEOUT_MS;
  if (typeof channelName !== 'string') throw new CommandError('join needs a "channel"');

  // createChannel returns the existing object unless it is CLOSED (and then ignores new params).
  const params = msg.params ?? {};
  const channel = entry.client.createChannel(channelName, params);
  let ch = entry.channels.get(channelName);
  if (!ch || ch.channel !== channel) {
    ch?.unsubscribe();
    ch = subscribeChannel(entry, channelName, channel);
    entry.channels.set(channelName, ch);
    if (msg.trackPosition) trackPosition(channel, params);
  }
  entry.lastDecline.delete(channelName);

  // join() only ever moves the state to JOINING synchronously (JOINED needs the server's ACK), so
  // after it returns the current state is meaningful for the waiter below.
  channel.join();

  return waitOn(
    (cb) => channel.onChannelStateChange(cb),
    (state) => {
      if (state === ChannelState.JOINED) {
        return { value: { state, presence: readPresence(channel) } };
      }
      if (state === ChannelState.DECLINED) {
        // The decline payload is captured by a subscriber that runs later in the same synchronous
        // publish, so build the error a microtask later, when it is there.
        return {
          later: () => {
            const payload = entry.lastDecline.get(channelName) ?? null;
            return {
              error: new CommandError(
                `join of ${JSON.stringify(channelName)} declined: ${payload?.message ?? 'no message'}`,
                { code: 'DECLINED', state, payload },
              ),
            };
          },
        };
      }
      return undefined;
    },
    timeout,
    () =>
      new CommandError(
        `join of ${JSON.stringify(channelName)} not acknowledged within ${timeout} ms ` +
          `(channel state ${channel.channelState}; 0.0.32 has no join timeout of its own)`,
        { code: 'TIMEOUT', state: channel.channelState },
      ),
  );
}

async function cmdSend(msg) {
  const ch = getChannel(getClient(msg.client), msg.channel);
  // sendMessage never throws in 0.0.32: while the channel is not JOINED the message is queued
  // (and flushed on the next ACK), so the state is returned to make that visible.
  ch.channel.sendMessage(msg.event, msg.payload ?? {});
  return { state: ch.channel.channelState };
}

async function cmdRequest(msg) {
  const ch = getChannel(getClient(msg.client), msg.channel);
  const timeout = msg.timeout ?? DEFAULT_TIMEOUT_MS;
  // sendForResponse has no timeout in 0.0.32 (its promise never rejects), so bound it here.
  return withTimeout(
    ch.channel.sendForResponse(msg.event, msg.payload ?? {}),
    timeout,
    () =>
      new CommandError(
        `no response to ${JSON.stringify(msg.event)} on ${JSON.stringify(msg.channel)} within ${timeout} ms ` +
          `(channel state ${ch.channel.channelState})`,
        { code: 'TIMEOUT', state: ch.channel.channelState },
      ),
  );
}

async function cmdPresence(msg) {
  const ch = getChannel(getClient(msg.client), msg.channel);
  return readPresence(ch.channel);
}

async function cmdState(msg) {
  const entry = getClient(msg.client);
  if (msg.channel === undefined) return entry.client.getState();
  return getChannel(entry, msg.channel).channel.channelState;
}

async function cmdLeave(msg) {
  const ch = getChannel(getClient(msg.client), msg.channel);
  // Sends LEAVE_CHANNEL only if JOINED (otherwise 0.0.32 queues it), then goes CLOSED. Our
  // listeners stay attached so the CLOSED transition is reported; a later join replaces them.
  ch.channel.leave();
  return { state: ch.channel.channelState };
}

async function cmdDisconnect(msg) {
  const entry = getClient(msg.client);
  const ws = entry.client._socket; // INTERNAL, only to wait for the close handshake to finish
  entry.client.disconnect();
  const closed = await waitUntil(() => !ws || ws.readyState === SOCKET_CLOSED, msg.timeout ?? DEFAULT_TIMEOUT_MS);
  return { state: entry.client.getState(), socket_closed: closed };
}

async function cmdDrop(msg) {
  const entry = getClient(msg.client);
  const ws = entry.client._socket; // INTERNAL: the W3CWebSocket of the `websocket` package
  if (!ws) throw new CommandError('client has no socket');
  if (msg.reconnect === false) {
    // INTERNAL: the flag disconnect() sets; the client's onclose then skips its reconnect.
    entry.client._disconnecting = true;
  }
  // INTERNAL: ws._connection.socket is the net.Socket under the WebSocketConnection.
  const tcp = ws.readyState === SOCKET_OPEN ? ws._connection?.socket : undefined;
  let method;
  if (tcp) {
    // No close frame is sent. destroy() ends the TCP stream (FIN); reset:true sends a RST.
    if (msg.reset && typeof tcp.resetAndDestroy === 'function') {
      tcp.resetAndDestroy();
      method = 'reset';
    } else {
      tcp.destroy();
      method = 'destroy';
    }
  } else {
    // Not open yet (or already closing): nothing to tear down abruptly, fall back to close().
    ws.close();
    method = 'close';
  }
  const closed = await waitUntil(() => ws.readyState === SOCKET_CLOSED, msg.timeout ?? DEFAULT_TIMEOUT_MS);
  return { method, state: entry.client.getState(), socket_closed: closed };
}

function shutdown(code = 0) {
  for (const entry of clients.values()) {
    entry.retired = true;
    try {
      entry.client.disconnect();
    } catch (err) {
      log('disconnect during shutdown failed', err);
    }
  }
  // Give the close frames a moment to leave, then go.
  setTimeout(() => process.exit(code), 50);
}

const commands = {
  connect: cmdConnect,
  join: cmdJoin,
  send: cmdSend,
  request: cmdRequest,
  presence: cmdPresence,
  state: cmdState,
  leave: cmdLeave,
  disconnect: cmdDisconnect,
  drop: cmdDrop,
  exit: async () => {
    setImmediate(() => shutdown(0));
    return null;
  },
};

// ---------------------------------------------------------------------------------------------
// Main loop: commands run concurrently (a pending join must not block a send on another client);
// their synchronous parts still execute in arrival order.

function handleLine(line) {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    emit({ type: 'fatal', kind: 'bad_command', error: `unparseable command line: ${describeError(err)}` });
    return;
  }
  const id = msg?.id ?? null;
  const handler = commands[msg?.cmd];
  const run = handler
    ? Promise.resolve().then(() => handler(msg))
    : Promise.reject(new CommandError(`unknown command ${JSON.stringify(msg?.cmd)}`, { code: 'UNKNOWN_COMMAND' }));
  run.then(
    (value) => emit({ type: 'result', id, ok: true, value: value === undefined ? null : value }),
    (err) =>
      emit({
        type: 'result',
        id,
        ok: false,
        error: err instanceof Error ? err.message : describeError(err),
        ...(err instanceof CommandError ? err.extra : { code: 'EXCEPTION' }),
      }),
  );
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', handleLine);
rl.on('close', () => shutdown(0));
log(`ready (node ${process.version})`);
