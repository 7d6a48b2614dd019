// The dashboard's shell: hash routing, the live event stream (with a polling
// fallback while it is down), the token form, and handing events to the
// current view. Views are in overview.js, batch.js and job.js; each is
// `{ el, filter, load(), onJob(ev), onBatch(ev), destroy() }`.

import { ApiError, events, setToken, takeTokenFromHash } from './api.js';
import { errorBox, fill, h } from './dom.js';
import { overview } from './overview.js';
import { batchView } from './batch.js';
import { jobView } from './job.js';

const POLL_MS = 5000; // fallback refresh while the stream is down
const RECONNECT_MS = 10000; // new EventSource after the server refused one

// Read by the browser test and handy in devtools: when this page was loaded
// (a reload would change it) and how many stream events it has applied.
window.__sluice = { loadedAt: Date.now(), events: 0, stream: 'connecting' };

const main = document.getElementById('main');
const liveEl = document.getElementById('live');
const banner = h('div', { class: 'banner' });
const slot = h('div');

/** The mounted view and its stream. */
let current = null;

function setLive(state, text) {
  window.__sluice.stream = state;
  liveEl.dataset.state = state;
  liveEl.textContent = text;
}

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  let m;
  if (path === '/' || path === '') return { make: () => overview() };
  if ((m = /^\/batches\/([^/]+)$/.exec(path))) {
    const id = decodeURIComponent(m[1]);
    return { make: () => batchView(id, params.get('state') || '') };
  }
  if ((m = /^\/jobs\/([^/]+)$/.exec(path))) {
    const id = decodeURIComponent(m[1]);
    return { make: () => jobView(id) };
  }
  return null;
}

function route(focus) {
  teardown();
  fill(banner);
  const r = parseRoute();
  if (!r) {
    fill(slot, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  const view = r.make();
  current = { view, es: null, pending: [], loading: false, again: false, poll: null, reconnect: null };
  fill(slot, view.el);
  if (focus) main.focus({ preventScroll: false });
  connect(current);
  refresh(current);
}

function teardown() {
  if (!current) return;
  const c = current;
  current = null;
  c.es?.close();
  clearInterval(c.poll);
  clearTimeout(c.reconnect);
  c.view.destroy?.();
}

/**
 * Loads the view's data. Events that arrive meanwhile are held and applied
 * after the snapshot, so a snapshot older than them cannot undo them.
 */
async function refresh(c) {
  if (c !== current) return;
  if (c.loading) {
    c.again = true;
    return;
  }
  c.loading = true;
  try {
    await c.view.load();
    if (c === current) fill(banner);
  } catch (e) {
    if (c === current) showError(e);
  } finally {
    c.loading = false;
    if (c === current) {
      const held = c.pending;
      c.pending = [];
      for (const [type, data, id] of held) dispatch(c, type, data, id);
      if (c.again) {
        c.again = false;
        refresh(c);
      }
    }
  }
}

function dispatch(c, type, data, id) {
  if (c.loading) {
    c.pending.push([type, data, id]);
    return;
  }
  window.__sluice.events += 1;
  if (type === 'job') c.view.onJob?.(data, id);
  else c.view.onBatch?.(data, id);
}

function connect(c) {
  c.es?.close();
  let wasOpen = false;
  setLive('connecting', 'connecting…');
  c.es = events(c.view.filter || {}, {
    onJob: (d, id) => c === current && dispatch(c, 'job', d, id),
    onBatch: (d, id) => c === current && dispatch(c, 'batch', d, id),
    onOpen: () => {
      if (c !== current) return;
      setLive('live', 'live');
      clearInterval(c.poll);
      c.poll = null;
      // After a reconnect the stream resumes by itself, but a refresh also
      // covers a server that could not resume (events pruned, restarted).
      if (wasOpen) refresh(c);
      wasOpen = true;
    },
    onError: (closed) => {
      if (c !== current) return;
      setLive(closed ? 'offline' : 'reconnecting', closed ? 'offline: refreshing every 5 s' : 'reconnecting…');
      if (!c.poll) c.poll = setInterval(() => refresh(c), POLL_MS);
      if (closed) {
        c.view.onStreamClosed?.();
        clearTimeout(c.reconnect);
        c.reconnect = setTimeout(() => c === current && connect(c), RECONNECT_MS);
      }
    },
  });
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) {
    fill(banner, tokenForm(e));
    return;
  }
  if (e instanceof ApiError && e.status === 404) {
    fill(banner, h('div', { class: 'error-box', role: 'alert', 'data-testid': 'error-banner' },
      h('strong', {}, 'Not found. '), e.message, ' ', h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  fill(banner, errorBox(e));
}

function tokenForm(e) {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, 'data-testid': 'token-input' });
  return h('form', {
    class: 'error-box token', role: 'alert',
    onsubmit: (ev) => {
      ev.preventDefault();
      setToken(input.value.trim());
      route(false);
    },
  },
  h('p', {}, h('strong', {}, 'This server needs an access token. '), e.message),
  h('label', { for: 'token' }, 'Token '), input, ' ', h('button', { type: 'submit' }, 'Use token'),
  h('p', { class: 'muted' }, 'Kept for this tab only (sessionStorage). You can also open the page with #token=….'));
}

takeTokenFromHash();
fill(main, banner, slot);
window.addEventListener('hashchange', () => {
  takeTokenFromHash();
  route(true);
});
route(false);
