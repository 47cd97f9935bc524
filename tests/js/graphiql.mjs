// Drives the gateway's GraphiQL page in headless Chromium: runs a query and shows its result,
// then starts a subscription and shows the event the test triggers. Prints one line per step
// (JSON where there is data) for the Rust test that runs it, every URL the page asked for
// outside the gateway, and whatever its content security policy refused.
// usage: node graphiql.mjs http://host:port TOKEN
import { chromium } from 'playwright-core';

const [base, token] = process.argv.slice(2);
const origin = new URL(base).origin;
const wsOrigin = origin.replace(/^http/, 'ws');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const failed = (message) => {
  console.error(message);
  browser.close().finally(() => process.exit(1));
};
const giveUp = setTimeout(() => failed('timed out'), 60000);

const page = await browser.newPage();
const outside = [];
page.on('request', (request) => {
  const url = request.url();
  if (!url.startsWith(origin) && !url.startsWith('data:')) outside.push(url);
});
page.on('websocket', (socket) => {
  if (!socket.url().startsWith(wsOrigin)) outside.push(socket.url());
});
page.on('pageerror', (error) => console.error('page error', error.message));


// Whatever the page's content security policy refuses, as the browser reports it.
await page.addInitScript(() => {
  window.refusedByPolicy = [];
  document.addEventListener('securitypolicyviolation', (event) => {
    window.refusedByPolicy.push(`${event.violatedDirective} ${event.blockedURI}`);
  });
});

// What a user would have typed into the editors, kept by GraphiQL in local storage.
const headers = JSON.stringify({ Authorization: `Bearer ${token}` });
await page.addInitScript(([headers]) => {
  if (!localStorage.getItem('ates-test-started')) {
    localStorage.setItem('ates-test-started', '1');
    localStorage.setItem('graphiql:headers', headers);
    localStorage.setItem('graphiql:query', 'query Me { me { id name role } }');
  }
}, [headers]);

const resultHas = async (text) => {
  try {
    await page.waitForFunction(
      (text) => (document.querySelector('.result-window')?.innerText || '').includes(text),
      text,
      { timeout: 20000 },
    );
  } catch (error) {
    console.error('result window:', await page.innerText('.result-window'));
    console.error('editor:', await page.innerText('.graphiql-query-editor'));
    throw error;
  }
  return page.innerText('.result-window');
};

await page.goto(`${base}/graphql`);
await page.click('.graphiql-execute-button');
const query = await resultHas('"role"');
console.log(JSON.stringify({ step: 'query', result: query }));

// Typed into the query editor (CodeMirror keeps its instance on its element).
await page.evaluate(() =>
  document
    .querySelector('.graphiql-query-editor .CodeMirror')
    .CodeMirror.setValue('subscription Mine { taskAssigned { task { title } } }'),
);
// GraphiQL reads the operation's name from the editor a moment after a change.
await page.waitForTimeout(1000);
await page.click('.graphiql-execute-button');
// The socket is open once the server acknowledged it; the test then creates a task.
await page.waitForTimeout(1000);
console.log('subscribed');
const event = await resultHas('Seen in GraphiQL');
console.log(JSON.stringify({ step: 'subscription', result: event }));
console.log(JSON.stringify({ step: 'outside', urls: outside }));
const violations = await page.evaluate(() => window.refusedByPolicy);
console.log(JSON.stringify({ step: 'policy', violations }));
clearTimeout(giveUp);
await browser.close();
