// Small hand-written line charts for the dashboard: inline SVG, no library,
// nothing loaded from elsewhere. `History` keeps the last minutes of readings
// in a ring buffer, `CounterRates` turns counters read at each poll into rates
// per second, and `lineChart` draws series of the history over time, with
// axes, a legend and each series' current value.

/** The readings of the last `windowMs`, oldest first, at most `capacity`. */
export class History {
  constructor(windowMs, capacity) {
    this.windowMs = windowMs;
    this.slots = new Array(capacity);
    this.first = 0;
    this.length = 0;
  }

  /** Adds a frame `{t, …}` (t in ms) and forgets those older than the window. */
  push(frame) {
    const capacity = this.slots.length;
    if (this.length === capacity) {
      this.first = (this.first + 1) % capacity;
      this.length -= 1;
    }
    this.slots[(this.first + this.length) % capacity] = frame;
    this.length += 1;
    while (this.length > 1 && this.slots[this.first].t < frame.t - this.windowMs) {
      this.slots[this.first] = undefined;
      this.first = (this.first + 1) % capacity;
      this.length -= 1;
    }
  }

  frames() {
    const out = [];
    for (let i = 0; i < this.length; i += 1) out.push(this.slots[(this.first + i) % this.slots.length]);
    return out;
  }

  last() { return this.length ? this.slots[(this.first + this.length - 1) % this.slots.length] : undefined; }
}

/**
 * Rates per second from counters read now and then, by source: each source
 * (a service instance; several replicas may answer in turn behind the
 * gateway) is compared only with its own previous reading, and the rate is
 * the sum of the sources' latest rates (a source unheard of for `staleMs`
 * drops out). A counter that went down (a restart) counts from 0.
 */
export class CounterRates {
  constructor(staleMs = 10_000) {
    this.staleMs = staleMs;
    this.readings = new Map();
    this.rates = new Map();
  }

  /** `counters` {key: count} of `source` at `t` ms → {key: per second}, or null before any rate. */
  update(source, t, counters) {
    const previous = this.readings.get(source);
    this.readings.set(source, { t, counters });
    if (previous && t > previous.t) {
      const seconds = (t - previous.t) / 1000;
      const rates = {};
      for (const [key, count] of Object.entries(counters)) {
        const before = previous.counters[key] ?? 0;
        rates[key] = (count >= before ? count - before : count) / seconds;
      }
      this.rates.set(source, { t, rates });
    }
    for (const [name, reading] of this.readings) {
      if (reading.t < t - this.staleMs) { this.readings.delete(name); this.rates.delete(name); }
    }
    if (!this.rates.size) return null;
    const sum = {};
    for (const { rates } of this.rates.values()) {
      for (const [key, rate] of Object.entries(rates)) sum[key] = (sum[key] ?? 0) + rate;
    }
    return sum;
  }
}

const SVG = 'http://www.w3.org/2000/svg';
const escape = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

/** 0 → "0", 3.25 → "3.3", 42.4 → "42", 12500 → "12.5k". */
export function formatNumber(v) {
  if (!Number.isFinite(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 10_000) return `${(v / 1000).toFixed(a >= 100_000 ? 0 : 1)}k`;
  if (a >= 10 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}

/** A round step (1, 2 or 5 × 10^n) giving about `count` ticks up to `max`. */
function niceStep(max, count, integer) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  return integer ? Math.max(1, Math.round(step)) : step;
}

/** A round time step for the x axis (at most `most` steps) and how its ticks are labelled. */
function timeStep(spanMs, most) {
  const step = [5, 10, 15, 30, 60, 120, 300].map((s) => s * 1000).find((s) => spanMs / s <= most) ?? 600_000;
  const label = (ago) => {
    if (ago === 0) return 'now';
    const s = Math.round(ago / 1000);
    return s < 60 || s % 60 ? `−${s} s` : `−${s / 60} min`;
  };
  return { step, label };
}

/**
 * Draws `series` of `frames` into `element` (an SVG and a legend under it).
 * Options: series [{key, label, color, value(frame) → number | null}], now
 * (ms, the right edge), windowMs (the most shown), minSpanMs (the least),
 * unit (after current values, e.g. "/s"), integer (whole-number ticks), note
 * (a line under the legend), height (px).
 * Each line is a `path.line` with data-series, data-points (how many),
 * data-last and data-max (its values), for a reader or a test.
 */
export function lineChart(element, options) {
  const { frames, series, now, windowMs, minSpanMs = 30_000, unit = '', integer = false, note = '', height = 190 } = options;
  const width = Math.max(260, Math.round(element.clientWidth || 500));
  const margin = { left: 46, right: 14, top: 10, bottom: 24 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const first = frames.length ? frames[0].t : now;
  const span = Math.min(windowMs, Math.max(minSpanMs, now - first));
  const start = now - span;

  const lines = series.map((s) => {
    const points = [];
    for (const frame of frames) {
      if (frame.t < start) continue;
      const v = s.value(frame);
      points.push(Number.isFinite(v) ? { t: frame.t, v } : null);
    }
    const values = points.filter(Boolean).map((p) => p.v);
    return { ...s, points, values, last: values.length ? values[values.length - 1] : null, max: values.length ? Math.max(...values) : null };
  });
  const top = Math.max(0, ...lines.map((l) => l.max ?? 0));
  const scale = top > 0 ? top : (integer ? 4 : 1);
  const step = niceStep(scale, 5, integer);
  const yMax = Math.max(step, Math.ceil(scale / step) * step);
  const x = (t) => margin.left + ((t - start) / span) * plotW;
  const y = (v) => margin.top + plotH - (v / yMax) * plotH;

  const parts = [];
  for (let v = 0; v <= yMax + step / 1000; v += step) {
    const py = y(v).toFixed(1);
    parts.push(`<line class="gridline" x1="${margin.left}" x2="${width - margin.right}" y1="${py}" y2="${py}"/>`,
      `<text class="tick" x="${margin.left - 6}" y="${py}" dy="0.32em" text-anchor="end">${formatNumber(Number(v.toPrecision(6)))}</text>`);
  }
  const time = timeStep(span, Math.max(2, Math.floor(plotW / 75)));
  for (let ago = 0; ago <= span; ago += time.step) {
    const px = x(now - ago).toFixed(1);
    parts.push(`<line class="gridline tick-x" x1="${px}" x2="${px}" y1="${margin.top + plotH}" y2="${margin.top + plotH + 4}"/>`,
      `<text class="tick" x="${px}" y="${height - 6}" text-anchor="${ago === 0 ? 'end' : 'middle'}">${time.label(ago)}</text>`);
  }
  parts.push(`<line class="axis" x1="${margin.left}" x2="${width - margin.right}" y1="${margin.top + plotH}" y2="${margin.top + plotH}"/>`);
  for (const line of lines) {
    let d = '';
    let pen = false;
    for (const p of line.points) {
      if (!p) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    parts.push(`<path class="line" d="${d}" stroke="${line.color}" data-series="${escape(line.key)}"`
      + ` data-points="${line.values.length}" data-last="${line.last ?? ''}" data-max="${line.max ?? ''}"/>`);
    const lastPoint = [...line.points].reverse().find(Boolean);
    if (lastPoint) parts.push(`<circle cx="${x(lastPoint.t).toFixed(1)}" cy="${y(lastPoint.v).toFixed(1)}" r="3" fill="${line.color}"/>`);
  }
  if (!lines.some((l) => l.values.length >= 2)) {
    parts.push(`<text class="empty" x="${margin.left + plotW / 2}" y="${margin.top + plotH / 2}" text-anchor="middle">collecting readings…</text>`);
  }

  const svg = `<svg xmlns="${SVG}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">${parts.join('')}</svg>`;
  const legend = lines.map((l) => `<li data-series="${escape(l.key)}"><i style="background:${l.color}"></i>${escape(l.label)}`
    + ` <b class="value">${l.last === null ? '–' : formatNumber(l.last) + unit}</b></li>`).join('');
  element.innerHTML = `${svg}<ul class="legend">${legend}</ul>${note ? `<div class="muted note">${escape(note)}</div>` : ''}`;
}
