// Shared by the pages: the signed-in session (a bearer token kept in
// localStorage, minted by the dev-token endpoint where it is on), calling the
// API through the gateway with it, and turning error codes into sentences.

const SESSION_KEY = 'seckill.session';

/** The signed-in session {token, expires_at, user_id, admin}, or null. */
export function session() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (s && s.token && new Date(s.expires_at) > new Date()) return s;
  } catch { /* no session */ }
  return null;
}

export async function signIn(userId, admin) {
  const answer = await api('POST', '/api/auth/dev-token', { user_id: userId, admin });
  if (answer.ok) localStorage.setItem(SESSION_KEY, JSON.stringify({ ...answer.data, user_id: userId, admin }));
  return answer;
}

/**
 * Signs in with a token from elsewhere (an identity provider, or
 * `order-service token`): its claims say who it is; the services check it.
 */
export function useToken(token) {
  try {
    const part = token.trim().split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    const roles = Array.isArray(claims.roles) ? claims.roles : [];
    localStorage.setItem(SESSION_KEY, JSON.stringify({
      token: token.trim(), expires_at: new Date(claims.exp * 1000).toISOString(),
      user_id: claims.sub, admin: roles.includes('admin'),
    }));
    return session() !== null;
  } catch { return false; }
}

export function signOut() { localStorage.removeItem(SESSION_KEY); }

/** Draws the sign-in bar into the page header; `changed` runs after a sign-in or out. */
export function mountSession(changed) {
  const bar = document.createElement('div');
  bar.id = 'session';
  bar.className = 'session';
  document.querySelector('header').append(bar);
  const draw = () => {
    const s = session();
    if (s) {
      bar.innerHTML = '<span id="session-name"></span> <button id="sign-out" class="secondary">Sign out</button>';
      bar.querySelector('#session-name').textContent = `Signed in: buyer ${s.user_id}${s.admin ? ' (admin)' : ''}`;
      bar.querySelector('#sign-out').onclick = () => { signOut(); draw(); changed?.(); };
    } else {
      bar.innerHTML = '<label>Buyer id <input id="session-user" type="number" min="1" value="1"></label>'
        + '<label class="check"><input id="session-admin" type="checkbox"> admin</label>'
        + '<button id="sign-in">Sign in</button>'
        + '<label>or a token <input id="session-token" type="password" placeholder="eyJ…"></label>'
        + '<button id="use-token" class="secondary">Use</button><span id="session-error" class="muted"></span>';
      bar.querySelector('#use-token').onclick = () => {
        if (!useToken(bar.querySelector('#session-token').value)) {
          bar.querySelector('#session-error').textContent = 'Not a valid, unexpired token.';
          return;
        }
        draw();
        changed?.();
      };
      bar.querySelector('#sign-in').onclick = async () => {
        const answer = await signIn(Number(bar.querySelector('#session-user').value), bar.querySelector('#session-admin').checked);
        if (!answer.ok) { bar.querySelector('#session-error').textContent = explain(answer); return; }
        draw();
        changed?.();
      };
    }
  };
  draw();
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  const s = session();
  if (s) init.headers.authorization = `Bearer ${s.token}`;
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

/**
 * A buyer's order, as the API wants it: a one-time order token for the
 * product first (refused at once when sold out, not started, or over the
 * limit), then the order with it.
 */
export async function placeOrder(productId, count) {
  const token = await api('POST', `/api/sales/${productId}/order-token`);
  if (!token.ok) return token;
  return api('POST', '/api/orders', { product_id: productId, count }, { 'order-token': token.data.order_token });
}

const SENTENCES = {
  ORDER_TOKEN_INVALID: () => 'The order link expired or was used; try again.',
  SOLD_OUT: () => 'Sold out: every item of this product is taken.',
  SALE_NOT_STARTED: (d) => `This sale has not started yet: it opens in ${countdown(d.starts_in_ms || 0)}.`,
  SALE_ENDED: () => 'This sale has ended.',
  AMOUNT_MISMATCH: (d) => `The amount does not match: this order costs ${money(d.amount_cents || 0)}.`,
  LIMIT_EXCEEDED: () => 'Limit reached: you already hold the most orders allowed for this product.',
  RATE_LIMITED: (d, r) => `Too many requests: wait ${r || 1} s and try again.`,
  PRODUCT_NOT_ON_SALE: () => 'This product is not on sale.',
  SALE_NOT_READY: () => 'The sale is being restored after a restart; try again in a moment.',
  ORDER_NOT_PAYABLE: (d) => d.message,
  ORDER_NOT_CANCELLABLE: (d) => d.message,
  ORDER_NOT_FOUND: () => 'No such order for this user.',
  INVALID_FIELD: (d) => `Invalid ${d.field}: ${d.message}`,
  NETWORK: () => 'The gateway cannot be reached.',
  UNAUTHENTICATED: () => 'Sign in first (top right).',
  FORBIDDEN: (d) => (/admin/.test(d.message) ? 'This needs an admin: sign in as an admin.' : `Not allowed: ${d.message}.`),
  NOT_FOUND: () => 'Sign-in with a buyer id is off here: paste a token from your identity provider (or `order-service token`).',
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

/** 1999 cents → "¥19.99". */
export function money(cents) { return `¥${(cents / 100).toFixed(2)}`; }

/** 83000 ms → "1:23" (h:mm:ss past an hour). */
export function countdown(ms) {
  const s = Math.ceil(ms / 1000);
  const hms = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  return hms[0] ? `${hms[0]}:${String(hms[1]).padStart(2, '0')}:${String(hms[2]).padStart(2, '0')}` : `${hms[1]}:${String(hms[2]).padStart(2, '0')}`;
}

export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
