// The pages, in Debian's Chromium driven by playwright-core, through the nginx
// gateway, against the real services (deploy/browser-test.sh starts them).
// Screenshots go to SCREENSHOT_DIR, and also to DOCS_SCREENSHOT_DIR when set
// (deploy/browser-test.sh --update-docs refreshes the README's pictures).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const GATEWAY = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8081';
const SHOTS = process.env.SCREENSHOT_DIR ?? '../../.run/screenshots';
const DOCS = process.env.DOCS_SCREENSHOT_DIR;
const PRODUCT = 1 + (Date.now() % 1_000_000_000);
const SOLD_OUT_PRODUCT = PRODUCT + 1;
const TIMED_PRODUCT = PRODUCT + 2;
const CHART_PRODUCT = PRODUCT + 3;
const PANELS_PRODUCT = PRODUCT + 4;

let browser;
let page;

// A dev token (deploy/browser-test.sh turns them on) for a buyer or an admin.
const tokens = new Map();
async function tokenFor(user, admin = false) {
  const key = `${user}/${admin}`;
  if (!tokens.has(key)) {
    const minted = await api('POST', '/api/auth/dev-token', { user_id: user, admin }, null);
    assert.equal(minted.status, 200, JSON.stringify(minted.data));
    tokens.set(key, minted.data.token);
  }
  return tokens.get(key);
}

/** Calls the API through the gateway as `as` (a token, or null for nobody). */
async function api(method, path, body, as) {
  const headers = body ? { 'content-type': 'application/json' } : {};
  if (as) headers.authorization = `Bearer ${as}`;
  const response = await fetch(GATEWAY + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: response.status, data: await response.json().catch(() => null) };
}

/** Signs in on the current page's sign-in bar (signing out first). */
async function signIn(user, admin = false) {
  if (await page.locator('#sign-out').count()) await page.click('#sign-out');
  await page.fill('#session-user', String(user));
  if (admin) await page.check('#session-admin');
  await page.click('#sign-in');
  await page.locator('#session-name', { hasText: `buyer ${user}${admin ? ' (admin)' : ''}` }).waitFor();
}

async function shot(name) {
  const file = `${SHOTS}/${name}.png`;
  await page.screenshot({ path: file, fullPage: true });
  if (DOCS) copyFileSync(file, `${DOCS}/${name}.png`);
}

/** A buyer's order through the API: its one-time order token, then the order. */
async function order(user, product, count = 1) {
  const bearer = await tokenFor(user);
  const token = await api('POST', `/api/sales/${product}/order-token`, undefined, bearer);
  if (token.status !== 200) return token;
  const response = await fetch(`${GATEWAY}/api/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}`, 'order-token': token.data.order_token },
    body: JSON.stringify({ product_id: product, count }),
  });
  return { status: response.status, data: await response.json().catch(() => null) };
}

async function placeByApi(user) {
  const placed = await order(user, PRODUCT);
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
    const opened = await api('PUT', `/api/sales/${product}`, { stock, per_user_limit: 1 }, await tokenFor(1, true));
    assert.equal(opened.status, 200, JSON.stringify(opened.data));
  }
});

after(async () => {
  await browser?.close();
});

test('gateway: routes both services, refuses oversize bodies as JSON, metrics for admins only', async () => {
  const stock = await api('GET', `/api/stock/${PRODUCT}`);
  assert.equal(stock.status, 200, JSON.stringify(stock.data));
  assert.equal(stock.data.total_count, 5);
  const tooLarge = await api('POST', '/api/orders', { product_id: PRODUCT, count: 1, pad: 'x'.repeat(20_000) }, await tokenFor(1));
  assert.equal(tooLarge.status, 413);
  assert.equal(tooLarge.data.code, 'PAYLOAD_TOO_LARGE');
  const admin = { authorization: `Bearer ${await tokenFor(1, true)}` };
  const metrics = await fetch(`${GATEWAY}/metrics/stock-service`, { headers: admin }).then((r) => r.text());
  assert.match(metrics, new RegExp(`seckill_stock_total_count\\{product="${PRODUCT}"\\} 5`));
  for (const path of ['/metrics/stock-service', '/metrics/order-service']) {
    const anonymous = await fetch(GATEWAY + path);
    assert.equal(anonymous.status, 401, path);
    const buyer = await fetch(GATEWAY + path, { headers: { authorization: `Bearer ${await tokenFor(2)}` } });
    assert.equal(buyer.status, 403, path);
  }
});

test('without a token: the pages, the sales list and a sale answer; ordering and admin calls do not', async () => {
  for (const path of ['/order', '/pay', '/batch', '/dashboard', '/app.js', '/api/sales', `/api/sales/${PRODUCT}`]) {
    const response = await fetch(GATEWAY + path);
    assert.equal(response.status, 200, path);
  }
  const refused = [
    ['POST', '/api/orders', { product_id: PRODUCT, count: 1 }],
    ['GET', '/api/orders', undefined],
    ['PUT', `/api/sales/${PRODUCT}`, { stock: 100 }],
    ['GET', '/api/admin/dashboard', undefined],
    ['PUT', `/api/stock/${PRODUCT}`, { total_count: 100 }],
  ];
  for (const [method, path, body] of refused) {
    const answer = await api(method, path, body, null);
    assert.equal(answer.status, 401, `${method} ${path}: ${JSON.stringify(answer.data)}`);
    assert.equal(answer.data.code, 'UNAUTHENTICATED');
  }
  assert.equal((await api('GET', `/api/stock/${PRODUCT}`)).data.total_count, 5, 'nothing changed');
});

test('order page: product cards; an order goes from PENDING to NEW; limit, sold out and bad input are explained', async () => {
  await page.goto(`${GATEWAY}/order`);
  const card = page.locator(`.product[data-product="${PRODUCT}"]`);
  await card.locator('.stock', { hasText: '5 / 5' }).waitFor();
  await page.fill('#count', '1');
  await card.locator('.buy').click();
  await page.locator('#message', { hasText: 'Sign in first' }).waitFor();
  await signIn(101);
  await card.locator('.buy').click();
  await page.locator('#status', { hasText: 'NEW' }).waitFor();
  await card.locator('.stock', { hasText: '4 / 5' }).waitFor();

  await card.locator('.buy').click();
  await page.locator('#message', { hasText: 'Limit reached' }).waitFor();
  await signIn(102);
  await page.fill('#count', '0');
  await card.locator('.buy').click();
  await page.locator('#message', { hasText: 'Invalid count' }).waitFor();
  await page.fill('#count', '1');
  await page.locator(`.product[data-product="${SOLD_OUT_PRODUCT}"] .buy`).click();
  await page.locator('#message', { hasText: 'Sold out' }).waitFor();
});

test('order page: a timed sale counts down by the server clock, opens at its start, and is bought at its price', async () => {
  const startsAt = new Date(Date.now() + 6000).toISOString();
  const opened = await api('PUT', `/api/sales/${TIMED_PRODUCT}`, {
    stock: 3, name: 'Phone X', list_price_cents: 199900, sale_price_cents: 99900, starts_at: startsAt,
  }, await tokenFor(1, true));
  assert.equal(opened.status, 200, JSON.stringify(opened.data));
  await page.goto(`${GATEWAY}/order`);
  const card = page.locator(`.product[data-product="${TIMED_PRODUCT}"]`);
  await card.locator('.name', { hasText: 'Phone X' }).waitFor();
  assert.equal(await card.locator('.sale-price').textContent(), '¥999.00');
  assert.equal(await card.locator('.list-price').textContent(), '¥1999.00');
  await card.locator('.countdown', { hasText: /^Starts in 0:0\d$/ }).waitFor();
  assert.ok(await card.locator('.buy').isDisabled(), 'the button waits for the start');
  await shot('order');
  const early = await order(106, TIMED_PRODUCT);
  assert.equal(early.status, 409, JSON.stringify(early.data));
  assert.equal(early.data.code, 'SALE_NOT_STARTED');
  await card.locator('.countdown', { hasText: 'On sale now' }).waitFor({ timeout: 15_000 });
  await card.locator('.buy').click();
  await page.locator('#status', { hasText: 'NEW' }).waitFor();
  await page.locator('#order-amount', { hasText: '¥999.00' }).waitFor();
  await card.locator('.stock', { hasText: '2 / 3' }).waitFor();
});

test('pay page: pay one order, cancel another, with the auto-cancel countdown shown; no buyer sees another\'s', async () => {
  const toPay = (await api('GET', '/api/orders', undefined, await tokenFor(101))).data.orders[0].order_no;
  const toCancel = await placeByApi(103);
  await page.goto(`${GATEWAY}/pay`);
  await signIn(101);
  const row = page.locator(`tr[data-order="${toPay}"]`);
  await row.locator('.status', { hasText: 'NEW' }).waitFor();
  assert.match(await row.locator('.countdown').textContent(), /^\d+:\d\d$/);
  await shot('pay');
  await row.locator('button.pay').click();
  await row.locator('.status', { hasText: 'PAID' }).waitFor();

  await signIn(103);
  const other = page.locator(`tr[data-order="${toCancel}"]`);
  await other.locator('.status', { hasText: 'NEW' }).waitFor();
  assert.equal(await page.locator(`tr[data-order="${toPay}"]`).count(), 0, 'buyer 103 does not see buyer 101\'s order');
  const peek = await api('GET', `/api/orders/${toPay}`, undefined, await tokenFor(103));
  assert.equal(peek.status, 404, 'nor can read it by its number');
  await other.locator('button.cancel').click();
  await other.locator('.status', { hasText: 'CANCELLED' }).waitFor();
  await other.locator('.countdown', { hasText: 'BUYER' }).waitFor();
});

test('sign-in bar: a token from elsewhere signs in as its subject', async () => {
  await page.goto(`${GATEWAY}/pay`);
  if (await page.locator('#sign-out').count()) await page.click('#sign-out');
  await page.fill('#session-token', 'not-a-token');
  await page.click('#use-token');
  await page.locator('#session-error', { hasText: 'Not a valid' }).waitFor();
  await page.fill('#session-token', await tokenFor(107));
  await page.click('#use-token');
  await page.locator('#session-name', { hasText: 'buyer 107' }).waitFor();
  await page.locator('#orders', { hasText: 'No orders yet' }).waitFor();
});

test('admin pages: a buyer is refused, told to sign in as an admin', async () => {
  await page.goto(`${GATEWAY}/dashboard`);
  await signIn(105);
  await page.locator('#message', { hasText: 'needs an admin' }).waitFor();
  await page.goto(`${GATEWAY}/batch`);
  await page.click('#start');
  await page.locator('#message', { hasText: 'needs an admin' }).waitFor();
});

test('dashboard: a cancelled order puts its item back in stock, live', async () => {
  const toCancel = await placeByApi(104);
  await page.goto(`${GATEWAY}/dashboard`);
  await signIn(1, true);
  const row = page.locator(`tr[data-product="${PRODUCT}"]`);
  // 5 opened; 101 paid, 104 new, 103 cancelled: 3 left once quiet.
  await row.locator('.db-stock', { hasText: /^3$/ }).waitFor();
  await row.locator('.verdict', { hasText: 'ok' }).waitFor();
  const cancelled = await api('POST', `/api/orders/${toCancel}/cancel`, {}, await tokenFor(104));
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.data));
  await row.locator('.db-stock', { hasText: /^4$/ }).waitFor();
  await row.locator('.redis-stock', { hasText: /^4$/ }).waitFor();
  await row.locator('.verdict', { hasText: 'ok' }).waitFor();
  await page.locator('#verdict', { hasText: 'consistent' }).waitFor();
});

/**
 * Waits until a dashboard chart's line shows `want` (charts.js puts each
 * line's figures on its path: data-points, data-last, data-max): at least
 * `points` points, a last value of `last`, a highest value of at least `max`
 * (or above 0 with max: 0 and above true). Fails with what the line showed.
 */
async function lineShows(chart, series, want, timeout = 30_000) {
  const selector = `#chart-${chart} path.line[data-series="${series}"]`;
  try {
    await page.waitForFunction(({ selector, want }) => {
      const line = document.querySelector(selector)?.dataset;
      if (!line) return false;
      return (want.points === undefined || Number(line.points) >= want.points)
        && (want.last === undefined || line.last === String(want.last))
        && (want.max === undefined || (want.above ? Number(line.max) > want.max : Number(line.max) >= want.max));
    }, { selector, want }, { timeout, polling: 200 });
  } catch {
    const shown = await page.locator(selector).evaluate((el) => ({ ...el.dataset })).catch(() => 'no such line');
    assert.fail(`${chart} chart, line ${series}: wanted ${JSON.stringify(want)}, shows ${JSON.stringify(shown)}`);
  }
}

test('dashboard charts: a small sale is drawn live as answers/s, committed orders/s, stock left and backlog', async () => {
  const opened = await api('PUT', `/api/sales/${CHART_PRODUCT}`, { stock: 30, per_user_limit: 1 }, await tokenFor(1, true));
  assert.equal(opened.status, 200, JSON.stringify(opened.data));
  await page.goto(`${GATEWAY}/dashboard`);
  await signIn(1, true);
  // Rates are deltas between the page's readings: a few readings before the sale.
  await lineShows('stock', CHART_PRODUCT, { last: 30, points: 2 });
  await lineShows('committed', 'committed', { last: 0, points: 3 });

  // 58 buyers for 30 items, in waves a second apart that grow and then
  // shrink; two buyers try again while stock is left (over their limit of 1).
  const answers = [];
  let buyer = 300;
  for (const [wave, size] of [4, 6, 8, 10, 12, 10, 8].entries()) {
    const buyers = Array.from({ length: size }, () => (buyer += 1));
    answers.push(...await Promise.all(buyers.map((b) => order(b, CHART_PRODUCT))));
    if (wave === 0 || wave === 2) answers.push(await order(buyers[0], CHART_PRODUCT));
    await sleep(1000);
  }
  const answered = (code) => answers.filter((a) => (code === 201 ? a.status === 201 : a.data?.code === code)).length;
  assert.deepEqual([answered(201), answered('SOLD_OUT'), answered('LIMIT_EXCEEDED')], [30, 28, 2],
    JSON.stringify(answers.map((a) => a.data?.code ?? a.status)));

  // Each answer got its own line, above 0 while the sale ran.
  for (const answer of ['created', 'issued', 'sold_out', 'limit_exceeded']) {
    await lineShows('requests', answer, { max: 0, above: true });
  }
  assert.equal(await page.locator('#chart-requests path.line[data-series="rate_limited"]').count(), 0,
    'an answer nobody got is not drawn');
  // Orders were committed at a rate above 0, which falls back to 0 once the sale is over.
  await lineShows('committed', 'committed', { max: 0, above: true });
  await lineShows('committed', 'committed', { last: 0 });
  // The product's stock line goes from 30 to 0 and its backlog drains to 0.
  await lineShows('stock', CHART_PRODUCT, { last: 0, max: 30 });
  await lineShows('backlog', CHART_PRODUCT, { last: 0 });
  await page.locator(`#chart-stock li[data-series="${CHART_PRODUCT}"] .value`, { hasText: /^0 left$/ }).waitFor();
  await lineShows('check-backs', 'commit', { points: 2 });
  await page.locator(`tr[data-product="${CHART_PRODUCT}"] .verdict`, { hasText: 'ok' }).waitFor();
  await page.locator('#verdict', { hasText: 'consistent' }).waitFor();
});

/** The sum of the broker panel's "Stored" column (max − min offset of each queue). */
async function storedInQueues() {
  return page.locator('#broker-queues tr').evaluateAll((trs) => trs.reduce((n, tr) => n + Number(tr.cells[4]?.textContent || 0), 0));
}

test('dashboard panels: the broker\'s view shows the topic\'s queues and the stock group\'s lag; the auditor finds a small sale clean', async () => {
  // Still on the dashboard of the test before (its charts stay for the picture).
  const opened = await api('PUT', `/api/sales/${PANELS_PRODUCT}`, { stock: 10, per_user_limit: 1 }, await tokenFor(1, true));
  assert.equal(opened.status, 200, JSON.stringify(opened.data));
  const topic = page.locator('#broker-topic', { hasText: /_order_events$/ });
  await topic.waitFor();
  const before = await storedInQueues();
  assert.ok((await page.locator('#broker-queues tr').count()) >= 1, 'a row per queue');

  // A small sale: 4 buyers one after another (each order then goes alone,
  // one message each: buyers at the same moment would share a group
  // commit's message), one of whom cancels.
  const placed = [];
  for (const buyer of [501, 502, 503, 504]) placed.push(await order(buyer, PANELS_PRODUCT));
  assert.deepEqual(placed.map((p) => p.status), [201, 201, 201, 201], JSON.stringify(placed.map((p) => p.data)));
  const cancelled = await api('POST', `/api/orders/${placed[3].data.order_no}/cancel`, {}, await tokenFor(504));
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.data));

  // The broker's view: the five messages are in the topic's queues; the
  // stock group has caught up with the topic; no half message is left.
  await page.waitForFunction((want) => {
    const stored = [...document.querySelectorAll('#broker-queues tr')].reduce((n, tr) => n + Number(tr.cells[4]?.textContent || 0), 0);
    return stored >= want;
  }, before + 5, { polling: 250, timeout: 20_000 }).catch(async () => assert.fail(`stored ${await storedInQueues()}, wanted ${before + 5}`));
  const orderTopic = await topic.textContent();
  const stockLag = page.locator('#broker-lags tr', { hasText: orderTopic }).filter({ has: page.locator('td:first-child', { hasText: /_stock$/ }) });
  await stockLag.locator('td:nth-child(3)', { hasText: /^0$/ }).waitFor({ timeout: 30_000 });
  await page.locator('#halves', { hasText: /^0$/ }).waitFor({ timeout: 30_000 });
  assert.match(await page.locator('#broker-state').textContent(), /^Read .* in \d+ ms\.$/);

  // The auditor's verdict (every 15 s), once the sale's facts settled and
  // were judged: clean, with when it ran and how long it took.
  await page.locator('#audit-state', { hasText: /\(0 in flight,/ }).waitFor({ timeout: 90_000 });
  assert.equal(await page.locator('#audit-verdict').textContent(), 'clean', await page.locator('#audit-differences').textContent());
  assert.match(await page.locator('#audit-state').textContent(), /^Ran .*, took \d+ ms: \d+ committed facts/);
  assert.equal(await page.locator('#audit-differences li').count(), 0);
  await page.locator('#verdict', { hasText: 'consistent' }).waitFor();
  // A few quiet readings after the sales, for the picture.
  await lineShows('stock', CHART_PRODUCT, { points: 22 });
  await shot('dashboard');
});

test('batch page: 300 buyers for 60 items, exactly 60 sold and nothing oversold', async () => {
  await page.goto(`${GATEWAY}/batch`);
  await signIn(1, true);
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
