// DOM helpers and the small widgets every view shares: element builder,
// formatting, state badges, the batch progress bar and the counts list.
// Text always goes in as text nodes, never as HTML, so job args, results and
// error messages cannot inject markup.

/** Job states in lifecycle order; the API's names. */
export const STATES = ['scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'timed_out'];
/** States a job does not leave on its own. */
export const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/** Builds an element: attributes (`on*` become listeners), then children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A state's label: `timed_out` reads "timed out". */
export const label = (state) => String(state ?? '').replace(/_/g, ' ');

/** A coloured badge for a job or batch state. */
export function badge(state, testid) {
  return h('span', { class: `badge s-${state}`, 'data-testid': testid, 'data-state': state }, label(state));
}

/** Updates a badge made by `badge`. */
export function setBadge(el, state) {
  if (el.dataset.state === state) return;
  el.className = `badge s-${state}`;
  el.dataset.state = state;
  el.textContent = label(state);
}

/** Milliseconds since the epoch as a `<time>` in local time (empty when null). */
export function time(ms) {
  if (ms == null) return h('span', { class: 'muted' }, '—');
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}

/** A duration in ms, short: 850 ms, 12.3 s, 4 min 2 s, 3 h 5 min. */
export function duration(ms) {
  if (ms == null || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Pretty JSON in a `<pre>`. */
export function json(value, testid) {
  return h('pre', { class: 'json', 'data-testid': testid, tabindex: 0 }, JSON.stringify(value ?? null, null, 2));
}

/** Finished jobs of a batch's counts. */
export const finished = (counts = {}) => [...FINAL].reduce((n, s) => n + (counts[s] || 0), 0);

/** Whole percent finished; 100 only when every job is final. */
export function percent(counts, total) {
  if (!total) return 0;
  return Math.floor((finished(counts) * 100) / total);
}

/**
 * A batch progress bar: one coloured segment per final state (and running),
 * `role=progressbar` with the finished percentage in `aria-valuenow`.
 * Returns `{ el, update(batch) }`.
 */
export function progressBar(testid = 'batch-progress') {
  const segs = {};
  const track = h('div', { class: 'track' });
  for (const s of ['succeeded', 'failed', 'timed_out', 'cancelled', 'running']) {
    segs[s] = h('span', { class: `seg s-${s}` });
    track.append(segs[s]);
  }
  const text = h('span', { class: 'pct', 'data-testid': `${testid}-text` }, '0%');
  const el = h('div', {
    class: 'progress', role: 'progressbar', 'aria-label': 'Finished jobs',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'data-testid': testid,
  }, track, text);
  let last = '';
  return {
    el,
    update(batch) {
      const counts = batch.counts || {};
      const total = batch.total || 0;
      const key = JSON.stringify([counts, total]);
      if (key === last) return;
      last = key;
      for (const [s, seg] of Object.entries(segs)) {
        // CSSOM writes are allowed under the page's CSP; style attributes are not.
        seg.style.width = total ? `${((counts[s] || 0) * 100) / total}%` : '0';
      }
      const pct = percent(counts, total);
      el.setAttribute('aria-valuenow', pct);
      el.setAttribute('aria-valuetext', `${pct}% (${finished(counts)} of ${total} jobs finished)`);
      text.textContent = `${pct}% · ${finished(counts)}/${total}`;
    },
  };
}

/** The counts per state, coloured; zero counts are dimmed. Returns `{ el, update(counts) }`. */
export function countsList(testid = 'batch-counts') {
  const cells = {};
  const el = h('ul', { class: 'counts', 'data-testid': testid });
  for (const s of STATES) {
    cells[s] = h('span', { class: 'n', 'data-testid': `count-${s}` }, '0');
    el.append(h('li', { class: `c s-${s}`, 'data-state': s }, cells[s], ' ', label(s)));
  }
  return {
    el,
    update(counts = {}) {
      for (const s of STATES) {
        const n = counts[s] || 0;
        if (cells[s].textContent !== String(n)) cells[s].textContent = String(n);
        cells[s].parentElement.classList.toggle('zero', n === 0);
      }
    },
  };
}

/**
 * Coalesces calls: `fn` runs at most once per `ms`, with the latest call's
 * arguments, so a burst of events costs one render or one fetch.
 */
export function throttle(fn, ms) {
  let timer = null;
  let lastRun = 0;
  let args = [];
  const run = () => {
    timer = null;
    lastRun = Date.now();
    fn(...args);
  };
  const wrapped = (...a) => {
    args = a;
    if (timer) return;
    timer = setTimeout(run, Math.max(0, lastRun + ms - Date.now()));
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/**
 * A button that asks for a second click before doing something that cannot
 * be undone (a cancel of thousands of jobs should not be one slip away), and
 * shows its own progress and outcome.
 */
export function dangerButton(text, testid, action) {
  let armed = null;
  const btn = h('button', { type: 'button', class: 'danger', 'data-testid': testid });
  const reset = () => {
    armed = null;
    btn.textContent = text;
    btn.removeAttribute('aria-describedby');
  };
  btn.addEventListener('click', async () => {
    if (!armed) {
      btn.textContent = `${text}: click again to confirm`;
      armed = setTimeout(reset, 4000);
      return;
    }
    clearTimeout(armed);
    reset();
    btn.disabled = true;
    try {
      await action();
    } finally {
      btn.disabled = false;
    }
  });
  reset();
  return btn;
}

/** Shows a short message in the page's status region. */
export function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = message;
  el.dataset.kind = kind;
  el.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('show'), 5000);
}

/** An error box for a failed request: message, and each problem with its field. */
export function errorBox(err) {
  const items = (err.details || []).map((d) => {
    const where = d.index != null ? `jobs[${d.index}]${d.field ? `.${d.field}` : ''}` : d.field;
    return h('li', {}, where ? [h('code', {}, where), ': '] : null, d.message || JSON.stringify(d));
  });
  return h('div', { class: 'error-box', role: 'alert', 'data-testid': 'error-banner' },
    h('strong', {}, err.message || String(err)),
    err.field ? h('span', {}, ' (', h('code', {}, err.field), ')') : null,
    items.length ? h('ul', {}, items) : null);
}

/** The last error of a job or of a compact job event, as `{attempt, kind, message}`. */
export function lastError(job) {
  const e = job.last_error ?? job.error ?? (Array.isArray(job.errors) ? job.errors[job.errors.length - 1] : null);
  if (e == null) return null;
  return typeof e === 'string' ? { message: e } : e;
}
