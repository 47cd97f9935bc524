// Opens a page in headless Chromium and prints what it wrote into its `#result` element.
// usage: node visit.mjs URL
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error('page error', error.message));
  await page.goto(url);
  const result = page.locator('#result');
  await result.filter({ hasText: /./ }).waitFor({ timeout: 30000 });
  console.log(await result.textContent());
} finally {
  await browser.close();
}
