// Drives the admin page in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core; never a downloaded browser) for tests/admin/test_browser.py.
//
//   node admin_page.mjs '<json>'   with {url, token, nodeId, channel, members, user,
//                                         presence, errorKind, screenshots}
//
// Signs in (a wrong token first), waits for the live data, opens the channel, evicts the
// user, and takes a screenshot at each step. It checks what the page shows and prints one
// JSON line with what it saw, for the Python side to check again; it exits 1 on a failed
// check, with the reason in that line.
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const TIMEOUT = 15000;
const report = { screenshots: [], dialogs: [], consoleErrors: [], requests: [], steps: [] };

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  report.steps.push(what);
}

async function shot(page, name) {
  const path = `${config.screenshots}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  report.screenshots.push(path);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  // Only the page's own confirm() may open a dialog: an alert() would be injected script.
  page.on('dialog', (dialog) => {
    report.dialogs.push({ type: dialog.type(), message: dialog.message() });
    dialog.type() === 'confirm' ? dialog.accept() : dialog.dismiss();
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') report.consoleErrors.push(msg.text());
  });
  page.on('pageerror', (error) => report.consoleErrors.push(String(error)));
  page.on('request', (request) => report.requests.push(request.url()));

  await page.goto(config.url);
  await page.locator('#login').waitFor({ state: 'visible' });
  check(await page.locator('#dashboard').isHidden(), 'no data before signing in');
  await shot(page, '1-login');

  await page.fill('#token', 'not-the-admin-token-at-all');
  await page.click('#login button[type=submit]');
  await page.locator('#login-error', { hasText: 'The token was refused.' }).waitFor();
  check(true, 'a wrong token is refused');

  await page.fill('#token', config.token);
  await page.click('#login button[type=submit]');
  await page.locator('#node', { hasText: `node ${config.nodeId}` }).waitFor();
  report.node = await page.textContent('#node');
  check(report.node === `node ${config.nodeId}`, 'the node id is shown');

  const row = page.locator('#channels tbody tr', { has: page.getByRole('button', { name: config.channel, exact: true }) });
  await row.locator('td.members', { hasText: String(config.members) }).waitFor();
  report.channelMembers = Number(await row.locator('td.members').textContent());
  check(report.channelMembers === config.members, 'the channel and its member count are shown');
  await page.locator('#errors td', { hasText: config.errorKind }).first().waitFor();
  check(true, 'the last errors list the handler error');
  // Rates need two polls: wait until one is a number.
  await page.locator('#rates td', { hasText: '/s' }).first().waitFor();
  report.rates = await page.locator('#rates tbody tr').count();
  report.nodes = await page.locator('#nodes tbody tr').count();
  report.connections = await page.locator('#connections tbody tr').count();
  await shot(page, '2-dashboard');

  await row.getByRole('button', { name: config.channel, exact: true }).click();
  await page.locator('#members-card').waitFor({ state: 'visible' });
  const member = page.locator(`#members tbody tr[data-user="${config.user}"]`);
  await member.waitFor();
  report.presence = await member.locator('td.presence').textContent();
  check(report.presence.includes(config.presence), "a member's presence is shown");
  report.memberRows = await page.locator('#members tbody tr').count();
  await shot(page, '3-members');

  await member.getByRole('button', { name: 'Evict' }).click();
  await member.waitFor({ state: 'detached' });
  report.action = await page.textContent('#action');
  check(report.action.startsWith(`evicted ${config.user}`), 'the eviction is confirmed');
  await row.locator('td.members', { hasText: String(config.members - 1) }).waitFor();
  check(true, 'the member count went down');
  await shot(page, '4-evicted');

  report.tokenInStorage = await page.evaluate(() => sessionStorage.getItem('pondsocket-admin-token'));
  report.injected = await page.evaluate(() => document.querySelectorAll('#members b, #members script').length);
} catch (error) {
  failed = String(error && error.message ? error.message : error);
  report.error = failed;
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(failed ? 1 : 0);
