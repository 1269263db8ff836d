// The dashboard's two panels read from the broker and the auditor, each
// polled on its own clock: the broker's view (GET /api/admin/broker, a light
// read of the broker's admin API) every few seconds, and the auditor's
// verdict (GET /api/admin/audit, a full audit) every 15 s at most — an audit
// reads the whole order topic, and one runs at a time per instance (409
// AUDIT_RUNNING: the last verdict stays shown).
import { api, explain, $, cell } from '/app.js';

const BROKER_POLL_MS = 3000;
const AUDIT_POLL_MS = 15_000;
/** Differences named in the auditor's panel; the rest are counted. */
const FIRST_DIFFERENCES = 3;

/** Runs `task` now and every `ms`, one run at a time (a slow answer is not overtaken). */
function every(ms, task) {
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try { await task(); } finally { running = false; }
  };
  run();
  setInterval(run, ms);
  return run;
}

/** 75 s → "1 min 15 s". */
function age(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${seconds % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const time = (iso) => new Date(iso).toLocaleTimeString();

function rows(tbody, items, toCells, empty, columns) {
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement('tr');
    tr.append(...toCells(item));
    return tr;
  }));
  if (!items.length) tbody.innerHTML = `<tr><td colspan="${columns}" class="muted">${empty}</td></tr>`;
}

/** The broker panel (`#broker`): the order topic's queues, the lag per group, the undecided half messages. */
export function mountBrokerPanel() {
  return every(BROKER_POLL_MS, async () => {
    const answer = await api('GET', '/api/admin/broker');
    if (!answer.ok) {
      $('#broker-state').textContent = answer.status === 503 ? `The broker cannot be read (${answer.data?.code}); retrying.` : explain(answer);
      $('#broker-state').className = 'muted fail';
      return;
    }
    const b = answer.data;
    $('#broker-state').className = 'muted';
    $('#broker-state').textContent = `Read ${time(b.read_at)} in ${b.took_ms} ms.`;
    $('#broker-topic').textContent = b.order_topic;
    rows($('#broker-queues'), b.queues, (q) => [
      cell(q.broker), cell(q.queue_id), cell(q.min_offset), cell(q.max_offset), cell(q.max_offset - q.min_offset),
    ], 'No queue.', 5);
    const now = Date.parse(b.read_at);
    rows($('#broker-lags'), b.lags, (l) => [
      cell(l.group), cell(l.topic), cell(l.waiting, l.waiting ? 'fail' : 'pass'),
      cell(l.oldest_waiting_since ? age(Math.max(0, Math.round((now - Date.parse(l.oldest_waiting_since)) / 1000))) : '–'),
    ], 'No watched group has offsets yet.', 4);
    $('#broker-lag-errors').textContent = b.lag_errors.length ? `Not read: ${b.lag_errors.join('; ')}` : '';
    const h = b.undecided_halves;
    $('#halves').textContent = `${h.count}${h.truncated ? '+' : ''}`;
    $('#halves').className = `big ${h.count ? 'fail' : 'pass'}`;
    $('#halves-oldest').textContent = h.count
      ? `oldest sent ${age(h.oldest_age_secs)} ago, ${h.most_checks} check-back${h.most_checks === 1 ? '' : 's'} so far`
      : 'none waiting for a commit or rollback';
  });
}

/** Each difference the audit names, overall ones first. */
function differences(report) {
  return [...report.overall, ...report.products.flatMap((p) => p.findings)];
}

/** The auditor panel (`#audit`): clean, or the differences, with when it ran and how long it took. */
export function mountAuditPanel() {
  return every(AUDIT_POLL_MS, async () => {
    $('#audit-state').textContent = 'Auditing…';
    const started = performance.now();
    const answer = await api('GET', '/api/admin/audit');
    const took = Math.round(performance.now() - started);
    if (!answer.ok) {
      const busy = answer.status === 409;
      $('#audit-state').textContent = busy
        ? 'Another audit is running on this instance; the last verdict stays.'
        : `Not audited: ${answer.data?.code ? `${answer.data.code}, ` : ''}${explain(answer)}`;
      return;
    }
    const r = answer.data;
    const found = differences(r);
    const verdict = $('#audit-verdict');
    verdict.textContent = r.clean ? 'clean' : found.length
      ? `${r.differences} difference${r.differences === 1 ? '' : 's'}` : 'incomplete';
    verdict.className = `big ${r.clean ? 'pass' : 'fail'}`;
    const list = $('#audit-differences');
    list.replaceChildren(...found.slice(0, FIRST_DIFFERENCES).map((d) => {
      const li = document.createElement('li');
      li.textContent = d.summary;
      li.title = d.kind;
      return li;
    }), ...r.incomplete_because.map((why) => {
      const li = document.createElement('li');
      li.textContent = `Incomplete: ${why}`;
      return li;
    }));
    if (found.length > FIRST_DIFFERENCES) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = `… and ${found.length - FIRST_DIFFERENCES} more (GET /api/admin/audit, or order-service audit).`;
      list.append(li);
    }
    const total = (field) => r.products.reduce((n, p) => n + p[field], 0);
    $('#audit-state').textContent = `Ran ${time(r.generated_at)}, took ${took} ms: `
      + `${total('committed_creations') + total('committed_cancellations')} committed facts `
      + `(${total('in_flight')} in flight, younger than ${r.settle_secs} s, not judged yet), `
      + `${r.broker.messages_read} messages read from the broker.`;
  });
}
