// Drives the demo chat page (`pondsocket demo`) in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core; never a downloaded browser) for
// tests/integration/test_demo_page.py.
//
//   node demo_page.mjs '<json>'   with {url, node, first, second, taken, text, reply,
//                                        screenshots}
//
// Two tabs of one browser (one context: they share localStorage, each has its own
// sessionStorage). Each asks for a name before it connects; the second tab's try with
// the first tab's name (in other letter case) is refused and it picks another; a message
// from the first tab shows in the second, and as the sender's own in the first; a reload
// rejoins without asking. A screenshot at each step. It checks what the pages show and
// prints one JSON line with what it saw, for the Python side to check again; it exits 1
// on a failed check, with the reason in that line.
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const TIMEOUT = 15000;
const report = { screenshots: [], steps: [], consoleErrors: [], requests: [], sockets: { a: [], b: [] } };

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  report.steps.push(what);
}

async function shot(page, name) {
  const path = `${config.screenshots}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  report.screenshots.push(path);
}

function watch(page, tab) {
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (msg) => { if (msg.type() === 'error') report.consoleErrors.push(`${tab}: ${msg.text()}`); });
  page.on('pageerror', (error) => report.consoleErrors.push(`${tab}: ${error}`));
  page.on('request', (request) => report.requests.push(request.url()));
  page.on('websocket', (socket) => report.sockets[tab].push(socket.url()));
}

// What a tab's message list shows: one entry per chat message.
async function messages(page) {
  return page.locator('#messages li.msg').evaluateAll((items) => items.map((li) => ({
    who: li.querySelector('.who')?.textContent ?? '',
    text: li.lastChild?.textContent ?? '',
    own: li.classList.contains('own'),
    align: getComputedStyle(li).alignSelf,
  })));
}

async function users(page) {
  return page.locator('#users li').allTextContents();
}

async function join(page, name) {
  await page.fill('#username', name);
  await page.click('#join-button');
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  const a = await context.newPage();
  const b = await context.newPage();
  watch(a, 'a');
  watch(b, 'b');

  // Tab A: asks for a name, and connects only once it has one.
  await a.goto(config.url);
  await a.locator('#join').waitFor({ state: 'visible' });
  await a.waitForTimeout(300);
  check(report.sockets.a.length === 0, 'tab A opens no socket before it has a name');
  check(await a.locator('#messages').isHidden(), 'tab A shows no chat before it has a name');
  report.askA = await a.textContent('#join h2');
  await shot(a, '1-a-asks-for-a-name');
  await join(a, config.first);
  await a.locator('#me', { hasText: config.first }).waitFor();
  report.meA = await a.textContent('#me');
  report.nodeA = await a.textContent('#node');
  check(report.nodeA === `node ${config.node}`, 'tab A shows the node it is on');
  check(report.sockets.a.length === 1 && report.sockets.a[0].endsWith(`username=${encodeURIComponent(config.first)}`),
    'tab A connected once, with the typed name');

  // Tab B: asked too; the same name (other case) is refused, another one is taken.
  await b.goto(config.url);
  await b.locator('#join').waitFor({ state: 'visible' });
  check(await b.inputValue('#username') === '', 'tab B is asked for a name, nothing filled in');
  await shot(b, '2-b-asks-for-a-name');
  await join(b, config.taken);
  await b.locator('#join-error', { hasText: 'is taken' }).waitFor();
  report.refusedB = await b.textContent('#join-error');
  check(report.refusedB === `The name ${config.taken} is taken in this room: pick another.`,
    'the taken name is refused with a message');
  check(await b.locator('#messages').isHidden(), 'tab B is not in the room after the refusal');
  await shot(b, '3-b-name-refused');
  await join(b, config.second);
  await b.locator('#me', { hasText: config.second }).waitFor();
  report.meB = await b.textContent('#me');
  await b.locator('#users li', { hasText: config.first }).waitFor();
  await a.locator('#users li', { hasText: config.second }).waitFor();
  report.usersA = await users(a);
  report.usersB = await users(b);
  check(report.usersA.length === 2 && report.usersB.length === 2, 'both tabs list the two distinct names');

  // A message from A: in B as someone else's, in A as its own.
  await a.fill('#text', config.text);
  await a.press('#text', 'Enter');
  await b.locator('#messages li.msg', { hasText: config.text }).waitFor();
  await a.locator('#messages li.own', { hasText: config.text }).waitFor();
  await b.fill('#text', config.reply);
  await b.click('#send');
  await a.locator('#messages li.msg', { hasText: config.reply }).waitFor();
  await b.locator('#messages li.own', { hasText: config.reply }).waitFor();
  report.messagesA = await messages(a);
  report.messagesB = await messages(b);
  check(report.messagesA.length === 2 && report.messagesB.length === 2, 'each tab shows both messages');
  await shot(a, '4-a-own-message');
  await shot(b, '5-b-sees-the-message');

  // A reload rejoins with the tab's name, and its earlier message is still its own.
  await a.reload();
  await a.locator('#me', { hasText: config.first }).waitFor();
  await a.locator('#messages li.msg', { hasText: config.reply }).waitFor();
  report.askedAfterReload = await a.locator('#join').isVisible();
  report.messagesAfterReload = await messages(a);
  report.socketsA = report.sockets.a.length;
  await shot(a, '6-a-reloaded');
  report.injected = await Promise.all([a, b].map((page) =>
    page.evaluate(() => document.querySelectorAll('#messages b, #messages script, #users b').length)));
} catch (error) {
  failed = String(error && error.message ? error.message : error);
  report.error = failed;
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(failed ? 1 : 0);
