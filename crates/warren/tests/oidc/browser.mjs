// Headless Chromium (Debian's) through Warren's single sign-on, driven by
// playwright-core for crates/warren/tests/sso.rs:
//   node browser.mjs START_URL LOGIN SCREENSHOT.png HOST...
// Opens START_URL (a resource behind a login), screenshots Warren's
// sign-in page, follows its single sign-on button, signs in on the
// provider's form as LOGIN, and prints one JSON line: the redirects the
// browser followed (count and chain), where it ended and what it shows.
// HOSTs resolve to 127.0.0.1 (the test's edge); the edge's and the
// provider's certificates are the test's own, so they are not checked.
import { chromium } from 'playwright-core';

const [, , startUrl, login, shot, ...hosts] = process.argv;
const rules = hosts.map((h) => `MAP ${h} 127.0.0.1`).join(', ');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=${rules}`,
  ],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const chain = [];
  page.on('response', (r) => {
    if (r.status() >= 300 && r.status() < 400 && r.request().isNavigationRequest()) {
      chain.push(`${r.status()} ${r.url().split('?')[0]}`);
    }
  });
  await page.goto(startUrl);
  const signInPage = { url: page.url().split('?')[0], title: await page.title() };
  await page.screenshot({ path: shot, fullPage: true });
  await page.click('a.sso');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await Promise.all([
    page.waitForURL((u) => u.toString().startsWith(startUrl), { timeout: 20000 }),
    page.click('button[type=submit]'),
  ]);
  const body = await page.textContent('body');
  console.log(JSON.stringify({ redirects: chain.length, chain, signInPage, url: page.url(), body }));
} finally {
  await browser.close();
}
