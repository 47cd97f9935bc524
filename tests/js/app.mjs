// Drives the popugs' web app at `/` in headless Chromium, as a manager and a worker in two
// browser contexts, against a real gateway. Each step prints one JSON line for the Rust test
// that runs it; any failure ends the run with a non-zero exit and says why.
//
// Steps: the worker signs in through `/#token=…` and the board goes live; the manager creates
// a task and the worker's board shows it (the time it took is printed); the worker completes
// it and the balance and the day's log move; a title with `[` is refused with the rule
// explained and the text kept; axe-core finds no serious or critical violation on the sign-in
// page or the board; every control of the board is reached with the Tab key. Then, when
// asked, it waits for the gateway to go away and come back, and shows that the board
// reconnects and shows what was assigned meanwhile.
//
// usage: node app.mjs BASE_URL MANAGER_TOKEN WORKER_TOKEN
//   then, on stdin: lines the Rust test sends between steps (see `waitFor`).
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const [base, managerToken, workerToken] = process.argv.slice(2);
const origin = new URL(base).origin;
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const fail = (message) => {
  console.error(message);
  browser.close().finally(() => process.exit(1));
};
const giveUp = setTimeout(() => fail('timed out'), 120000);
// Whatever each page said, for the message of a step that failed.
const pages = [];
const explain = async (error) => {
  const said = [];
  for (const page of pages) {
    said.push(await page.evaluate(() => [...document.querySelectorAll('#notice, .error, [role=status]')].map((e) => e.textContent).filter(Boolean).join(' | ')).catch(() => '?'));
  }
  fail(`${error.message}\npages said: ${JSON.stringify(said)}`);
};
process.on('unhandledRejection', explain);
process.on('uncaughtException', explain);
const say = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));

// The Rust test's lines, one at a time.
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function waitFor(expected) {
  const { value, done } = await lines.next();
  if (done || value.trim() !== expected) fail(`expected "${expected}" from the test, got ${value}`);
}

async function open(token) {
  const context = await browser.newContext();
  const page = await context.newPage();
  pages.push(page);
  page.on('pageerror', (error) => fail(`page error: ${error.message}`));
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('data:')) fail(`a request left the gateway: ${url}`);
  });
  await page.addInitScript(() => {
    window.refusedByPolicy = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.refusedByPolicy.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  await page.goto(`${base}/#token=${encodeURIComponent(token)}`);
  await page.getByRole('heading', { name: /My board/ }).waitFor();
  await page.locator('.live[data-state="live"]').waitFor();
  return page;
}

async function axe(page, name) {
  // Evaluated through the debugging protocol: the page's policy rightly refuses an inline
  // script, and axe is ours, not the page's.
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => window.axe.run(document));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (serious.length > 0) {
    fail(`${name}: ${JSON.stringify(serious.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) })))}`);
  }
  // The lesser ones, by rule and impact, for the log.
  return result.violations.map((v) => `${v.id} (${v.impact})`);
}

/** Tabs through PAGE and fails unless every link, button and field was focused on the way. */
async function tabsThrough(page, name) {
  const selector = 'main a, main button:not([disabled]), main input, main select, main textarea, header a, header button';
  const controls = await page.locator(selector).evaluateAll((all) => all.filter((e) => e.offsetParent !== null).length);
  await page.evaluate((selector) => document.querySelectorAll(selector).forEach((e) => delete e.dataset.tabbed), selector);
  await page.locator('body').focus();
  let reached = 0;
  // A date field takes a Tab for each of its parts.
  for (let i = 0; i < controls * 4 + 10; i += 1) {
    await page.keyboard.press('Tab');
    reached += await page.evaluate(() => {
      const element = document.activeElement;
      if (!element || element === document.body || element.dataset.tabbed) return 0;
      element.dataset.tabbed = 'yes';
      return 1;
    });
  }
  const unreached = await page.evaluate((selector) =>
    [...document.querySelectorAll(selector)]
      .filter((element) => element.offsetParent !== null && !element.dataset.tabbed)
      .map((element) => element.outerHTML.slice(0, 80)), selector);
  if (unreached.length > 0) fail(`${name}: not reached with Tab: ${unreached.join(', ')}`);
  return { page: name, controls, reached };
}

const balanceOf = async (page) => Number(await page.locator('#balance').textContent());
const card = (page, title) => page.locator('#tasks li.task', { has: page.getByRole('heading', { name: title, exact: true }) });

// Signing in: the sign-in page first, then the token from the fragment, gone from the address.
{
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  say('sign-in page', { axeViolations: await axe(page, 'sign-in page') });
  // An expired token brings the sign-in back, saying why.
  await page.goto(`${base}/#token=${encodeURIComponent(process.env.EXPIRED_TOKEN)}`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const expired = await page.getByRole('alert').textContent();
  if (!/expired/.test(expired)) fail(`an expired token was met with: ${expired}`);
  // A token pasted in the box signs in.
  await page.getByLabel('Your token from the auth service').fill(workerToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: /My board/ }).waitFor();
  // Signing out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const kept = await page.evaluate(() => sessionStorage.length);
  say('signing in and out', { expired, kept });
  await context.close();
}
const worker = await open(workerToken);
if (worker.url().includes('token=')) fail(`the token stayed in the address: ${worker.url()}`);
say('worker live', { url: worker.url() });
const manager = await open(managerToken);

// A task the manager creates shows on the worker's board within a second.
const startBalance = await balanceOf(worker);
await manager.getByLabel('Title').fill('Feed the parrots');
await manager.getByLabel('Tracker key (optional)').fill('UBERPOP-42');
const created = Date.now();
await manager.getByRole('button', { name: 'Create task' }).click();
await card(worker, 'Feed the parrots').waitFor({ timeout: 5000 });
say('assigned shown', { ms: Date.now() - created });
await manager.getByText(/Created “Feed the parrots”/).waitFor();
if ((await manager.getByLabel('Title').inputValue()) !== '') fail('the form kept a created title');

// Its fee is charged, then the worker completes it: the reward shows and the balance moves.
await worker.waitForFunction((start) => Number(document.querySelector('#balance').textContent) < start, startBalance);
const charged = await balanceOf(worker);
const price = await card(worker, 'Feed the parrots').locator('.price').textContent();
await card(worker, 'Feed the parrots').getByRole('button', { name: /Complete/ }).click();
await worker.getByText(/Done: “Feed the parrots”\. Reward \+\d+/).waitFor();
await card(worker, 'Feed the parrots').waitFor({ state: 'detached' });
await worker.waitForFunction((before) => Number(document.querySelector('#balance').textContent) > before, charged);
const rows = await worker.locator('section[aria-labelledby="today"] tbody tr').allTextContents();
say('completed', { start: startBalance, charged, after: await balanceOf(worker), price, rows });

// A title with `[` is refused: the rule is explained and what was typed stays.
await manager.getByLabel('Title').fill('Fix [the] perch');
await manager.getByLabel('Description (optional)').fill('It wobbles');
await manager.getByRole('button', { name: 'Create task' }).click();
const refusal = manager.locator('form .error');
await refusal.filter({ hasText: /not accepted/ }).waitFor();
say('refused title', {
  error: await refusal.textContent(),
  title: await manager.getByLabel('Title').inputValue(),
  description: await manager.getByLabel('Description (optional)').inputValue(),
  rule: await manager.locator('#title-rule').textContent(),
});

// Every control on the board is reached from the keyboard.
say('keyboard', await tabsThrough(worker, 'board'));
say('board', { axeViolations: await axe(worker, 'board') });

// The gateway goes away and comes back; what was assigned meanwhile shows.
say('ready for restart');
await waitFor('stopped');
await worker.locator('.live[data-state="reconnecting"]').waitFor({ timeout: 10000 });
say('reconnecting shown');
await waitFor('started');
await worker.locator('.live[data-state="live"]').waitFor({ timeout: 15000 });
await card(worker, 'Assigned while we were away').waitFor({ timeout: 5000 });
say('reconnected');

// The worker completes that one too; the day's two rewards leave it something to be paid.
await card(worker, 'Assigned while we were away').getByRole('button', { name: /Complete/ }).click();
await card(worker, 'Assigned while we were away').waitFor({ state: 'detached' });

// A worker cannot reach the tracker or the dashboard: the pages say so, and the API refuses.
const refusedTo = async (page, path, operation) => {
  await page.goto(`${base}/#${path}`);
  const said = await page.getByRole('alert').filter({ hasText: /only/ }).textContent();
  const code = await page.evaluate(async (query) => {
    const answer = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${sessionStorage.getItem('ates.token')}` },
      body: JSON.stringify({ query }),
    }).then((r) => r.json());
    return answer.errors?.[0]?.extensions?.code;
  }, operation);
  return { said, code };
};
say('worker refused', {
  tracker: await refusedTo(worker, '/tracker', 'mutation { shuffleTasks { moved } }'),
  dashboard: await refusedTo(worker, '/dashboard', '{ dailySummaries(from: "2026-03-01", to: "2026-03-01") { day } }'),
});
await worker.goto(`${base}/#/`);
await worker.locator('.live[data-state="live"]').waitFor();

// Past midnight: a new day, with more popugs to draw from.
say('ready for midnight');
await waitFor('midnight');
const carl = await open(process.env.CARL_TOKEN);
const accountant = await open(process.env.ACCOUNTANT_TOKEN);
const boards = { Bob: worker, Carl: carl, Ada: accountant };

// The manager creates a task and shuffles from the tracker until it moves: each time, the
// boards follow, the new holder's showing it and no other's.
await manager.getByLabel('Title').fill('Shuffle me');
await manager.getByRole('button', { name: 'Create task' }).click();
await manager.getByText(/Created “Shuffle me”/).waitFor();
await manager.goto(`${base}/#/tracker`);
await manager.getByRole('heading', { name: 'Tracker' }).waitFor();
await manager.getByLabel('Status').selectOption('OPEN');
const holder = async () => {
  const row = manager.locator('#results tbody tr', { hasText: 'Shuffle me' });
  await row.waitFor();
  return (await row.locator('td').nth(3).textContent()).trim();
};
const followed = async (name) => {
  for (const [who, page] of Object.entries(boards)) {
    await card(page, 'Shuffle me').waitFor({ state: who === name ? 'visible' : 'detached', timeout: 5000 });
  }
};
let before = await holder();
await followed(before);
say('tracker', { axeViolations: await axe(manager, 'tracker'), keyboard: await tabsThrough(manager, 'tracker'), holder: before });
const shuffles = [];
for (let attempt = 0; attempt < 10; attempt += 1) {
  await manager.getByRole('button', { name: 'Shuffle open tasks' }).click();
  await manager.getByRole('button', { name: 'Yes, shuffle' }).click();
  const report = await manager.locator('#shuffled').filter({ hasText: /reassigned/ }).textContent();
  await manager.locator('#results tbody tr', { hasText: 'Shuffle me' }).waitFor();
  const after = await holder();
  await followed(after);
  shuffles.push({ report, before, after });
  if (after !== before) break;
  before = after;
  await manager.locator('#shuffled').evaluate((element) => { element.textContent = ''; });
}
say('shuffled', { shuffles });

// The accountant closes the day that ended; the chart's table and the payouts show it.
await accountant.goto(`${base}/#/dashboard`);
await accountant.getByRole('heading', { name: 'Dashboard' }).waitFor();
await accountant.locator('#days-chart canvas').waitFor();
const closeDay = await accountant.getByLabel('Day', { exact: true }).inputValue();
await accountant.getByRole('button', { name: 'Close the day' }).click();
const closed = await accountant.locator('#closed').filter({ hasText: /is closed/ }).textContent();
const dayRow = accountant.locator('table tr', { hasText: closeDay }).first();
await dayRow.filter({ hasText: 'closed' }).waitFor();
await accountant.locator('#payouts tbody tr', { hasText: 'Bob' }).waitFor();
say('closed', {
  day: closeDay,
  report: closed,
  row: await dayRow.textContent(),
  payouts: await accountant.locator('#payouts tbody tr').allTextContents(),
  axeViolations: await axe(accountant, 'dashboard'),
  keyboard: await tabsThrough(accountant, 'dashboard'),
});

// An admin sees the analytics too, and retries the payout the payment system failed.
const admin = await open(process.env.ADMIN_TOKEN);
await admin.goto(`${base}/#/dashboard`);
await admin.locator('#top-chart canvas').waitFor();
const topRow = admin.locator('section[aria-labelledby="top"] tbody tr', { hasText: '2026-03-01' });
const top = await topRow.textContent();
const payoutStatus = admin.getByLabel('Status', { exact: true });
const failedRow = admin.locator('#payouts tbody tr', { hasText: 'Bob' }).filter({ hasText: 'failed' });
for (let attempt = 0; attempt < 40 && (await failedRow.count()) === 0; attempt += 1) {
  await payoutStatus.selectOption('');
  await payoutStatus.selectOption('FAILED');
  await admin.waitForTimeout(250);
}
const failed = await failedRow.textContent();
await failedRow.getByRole('button', { name: /Retry/ }).click();
const retried = await admin.getByText(/payout of 2026-03-01 is sent again/).textContent();
say('admin', {
  top,
  failed,
  retried,
  axeViolations: await axe(admin, 'admin dashboard'),
  keyboard: await tabsThrough(admin, 'admin dashboard'),
});

const refused = [];
for (const page of [worker, manager, carl, accountant, admin]) refused.push(...(await page.evaluate(() => window.refusedByPolicy)));
if (refused.length > 0) fail(`the content security policy refused: ${refused.join(', ')}`);
say('done');
clearTimeout(giveUp);
await browser.close();
process.exit(0);
