// Shared by the pages: calling the API through the gateway, and turning its
// error codes into sentences a buyer understands.

export async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { status: 0, ok: false, data: { code: 'NETWORK', message: String(err) } };
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  return { status: response.status, ok: response.ok, data, retryAfter: response.headers.get('retry-after') };
}

const SENTENCES = {
  SOLD_OUT: () => 'Sold out: every item of this product is taken.',
  LIMIT_EXCEEDED: () => 'Limit reached: you already hold the most orders allowed for this product.',
  RATE_LIMITED: (d, r) => `Too many requests: wait ${r || 1} s and try again.`,
  PRODUCT_NOT_ON_SALE: () => 'This product is not on sale.',
  SALE_NOT_READY: () => 'The sale is being restored after a restart; try again in a moment.',
  ORDER_NOT_PAYABLE: (d) => d.message,
  ORDER_NOT_CANCELLABLE: (d) => d.message,
  ORDER_NOT_FOUND: () => 'No such order for this user.',
  INVALID_FIELD: (d) => `Invalid ${d.field}: ${d.message}`,
  NETWORK: () => 'The gateway cannot be reached.',
};

/** A sentence for an API answer that is not a success. */
export function explain(answer) {
  const data = answer.data || {};
  const sentence = SENTENCES[data.code];
  if (sentence) return sentence(data, answer.retryAfter);
  return data.message || `The server answered ${answer.status}.`;
}

export function show(element, text, kind) {
  element.textContent = text;
  element.className = `msg ${kind}`;
  element.hidden = false;
}

export function $(selector) { return document.querySelector(selector); }

export function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
