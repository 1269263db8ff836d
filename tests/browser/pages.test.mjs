// The pages, in Debian's Chromium driven by playwright-core, through the nginx
// gateway, against the real services (deploy/browser-test.sh starts them).
// Screenshots go to SCREENSHOT_DIR, and also to DOCS_SCREENSHOT_DIR when set
// (deploy/browser-test.sh --update-docs refreshes the README's pictures).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const GATEWAY = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8081';
const SHOTS = process.env.SCREENSHOT_DIR ?? '../../.run/screenshots';
const DOCS = process.env.DOCS_SCREENSHOT_DIR;
const PRODUCT = 1 + (Date.now() % 1_000_000_000);
const SOLD_OUT_PRODUCT = PRODUCT + 1;

let browser;
let page;

async function api(method, path, body) {
  const response = await fetch(GATEWAY + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, data: await response.json().catch(() => null) };
}

async function shot(name) {
  const file = `${SHOTS}/${name}.png`;
  await page.screenshot({ path: file, fullPage: true });
  if (DOCS) copyFileSync(file, `${DOCS}/${name}.png`);
}

async function placeByApi(user) {
  const placed = await api('POST', '/api/orders', { user_id: user, product_id: PRODUCT, count: 1 });
  assert.equal(placed.status, 201, JSON.stringify(placed.data));
  return placed.data.order_no;
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  if (DOCS) mkdirSync(DOCS, { recursive: true });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium' });
  page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  page.setDefaultTimeout(20_000);
  // What the page itself complains about is what a failing test needs to show.
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[console] ${msg.text()}`);
  });
  for (const [product, stock] of [[PRODUCT, 5], [SOLD_OUT_PRODUCT, 0]]) {
    const opened = await api('PUT', `/api/sales/${product}`, { stock, per_user_limit: 1 });
    assert.equal(opened.status, 200, JSON.stringify(opened.data));
  }
});

after(async () => {
  await browser?.close();
});

test('gateway: routes both services, refuses oversize bodies as JSON', async () => {
  const stock = await api('GET', `/api/stock/${PRODUCT}`);
  assert.equal(stock.status, 200, JSON.stringify(stock.data));
  assert.equal(stock.data.total_count, 5);
  const tooLarge = await api('POST', '/api/orders', { user_id: 1, product_id: PRODUCT, count: 1, pad: 'x'.repeat(20_000) });
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.data.code, 'PAYLOAD_TOO_LARGE');
  const metrics = await fetch(`${GATEWAY}/metrics/stock-service`).then((r) => r.text());
  assert.match(metrics, new RegExp(`seckill_stock_total_count\\{product="${PRODUCT}"\\} 5`));
});

test('order page: an order goes from PENDING to NEW; limit, sold out and bad input are explained', async () => {
  await page.goto(`${GATEWAY}/order`);
  await page.locator(`#product option[value="${PRODUCT}"]`).waitFor({ state: 'attached' });
  await page.selectOption('#product', String(PRODUCT));
  await page.locator('#stock', { hasText: '5 / 5' }).waitFor();
  await page.fill('#user', '101');
  await page.fill('#count', '1');
  await page.click('#place');
  await page.locator('#status', { hasText: 'NEW' }).waitFor();
  await page.locator('#stock', { hasText: '4 / 5' }).waitFor();
  await shot('order');

  await page.click('#place');
  await page.locator('#message', { hasText: 'Limit reached' }).waitFor();
  await page.fill('#user', '102');
  await page.fill('#count', '0');
  await page.click('#place');
  await page.locator('#message', { hasText: 'Invalid count' }).waitFor();
  await page.fill('#count', '1');
  await page.selectOption('#product', String(SOLD_OUT_PRODUCT));
  await page.click('#place');
  await page.locator('#message', { hasText: 'Sold out' }).waitFor();
});

test('pay page: pay one order, cancel another, with the auto-cancel countdown shown', async () => {
  const toPay = (await api('GET', '/api/orders?user_id=101')).data.orders[0].order_no;
  const toCancel = await placeByApi(103);
  await page.goto(`${GATEWAY}/pay?user=101`);
  const row = page.locator(`tr[data-order="${toPay}"]`);
  await row.locator('.status', { hasText: 'NEW' }).waitFor();
  assert.match(await row.locator('.countdown').textContent(), /^\d+:\d\d$/);
  await shot('pay');
  await row.locator('button.pay').click();
  await row.locator('.status', { hasText: 'PAID' }).waitFor();

  await page.fill('#user', '103');
  await page.click('#load');
  const other = page.locator(`tr[data-order="${toCancel}"]`);
  await other.locator('button.cancel').click();
  await other.locator('.status', { hasText: 'CANCELLED' }).waitFor();
  await other.locator('.countdown', { hasText: 'BUYER' }).waitFor();
});

test('dashboard: a cancelled order puts its item back in stock, live', async () => {
  const toCancel = await placeByApi(104);
  await page.goto(`${GATEWAY}/dashboard`);
  const row = page.locator(`tr[data-product="${PRODUCT}"]`);
  // 5 opened; 101 paid, 104 new, 103 cancelled: 3 left once quiet.
  await row.locator('.db-stock', { hasText: /^3$/ }).waitFor();
  await row.locator('.verdict', { hasText: 'ok' }).waitFor();
  const cancelled = await api('POST', `/api/orders/${toCancel}/cancel`, { user_id: 104 });
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.data));
  await row.locator('.db-stock', { hasText: /^4$/ }).waitFor();
  await row.locator('.redis-stock', { hasText: /^4$/ }).waitFor();
  await row.locator('.verdict', { hasText: 'ok' }).waitFor();
  await page.locator('#verdict', { hasText: 'consistent' }).waitFor();
  await shot('dashboard');
});

test('batch page: 300 buyers for 60 items, exactly 60 sold and nothing oversold', async () => {
  await page.goto(`${GATEWAY}/batch`);
  await page.fill('#buyers', '300');
  await page.fill('#concurrency', '32');
  await page.fill('#stock', '60');
  await page.click('#start');
  await page.locator('#verdict', { hasText: 'All invariants hold' }).waitFor({ timeout: 90_000 });
  assert.equal(await page.locator('#created').textContent(), '60');
  await page.locator('tr[data-check="oversold 0"] .pass').waitFor();
  await page.locator('tr[data-check="Redis == DB: yes"] .pass').waitFor();
  await shot('batch');
});
