// The overview (`#/`): queues with their counts per state, recent batches
// with live progress bars, and a form to submit a batch as JSON.

import { api, ApiError, page, qs } from './api.js';
import { STATES, badge, countsList, duration, errorBox, fill, h, label, progressBar, setBadge, throttle, time } from './dom.js';

const PAGE = 25;
/** sessionStorage key of the last event id seen on the unfiltered stream. */
const CURSOR_KEY = 'sluice.cursor';

const EXAMPLE = JSON.stringify({
  name: 'example',
  jobs: [
    { kind: 'sleep', args: { ms: 2000 } },
    { kind: 'sleep', args: { ms: 1000 }, depends_on: [0] },
    { kind: 'noop', depends_on: [1] },
  ],
}, null, 2);

/** The overview view. */
export function overview() {
  const rows = new Map();
  let next = null;

  const queuesBody = h('div', { 'data-testid': 'queues' }, h('p', { class: 'muted' }, 'Loading…'));
  const tbody = h('tbody', {});
  const more = h('button', { type: 'button', hidden: true, 'data-testid': 'load-more-batches', onclick: loadMore }, 'Load more');
  const empty = h('p', { class: 'muted', hidden: true }, 'No batches yet. Submit one below or with POST /v1/batches.');

  const el = h('div', { class: 'overview', 'data-testid': 'overview' },
    h('h1', {}, 'Overview'),
    h('section', { 'aria-labelledby': 'q-h' }, h('h2', { id: 'q-h' }, 'Queues'), queuesBody),
    h('section', { 'aria-labelledby': 'b-h' },
      h('h2', { id: 'b-h' }, 'Recent batches'),
      h('div', { class: 'scroll' },
        h('table', { class: 'batches', 'data-testid': 'batch-list' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Batch'), h('th', { scope: 'col' }, 'State'),
            h('th', { scope: 'col', class: 'wide' }, 'Progress'), h('th', { scope: 'col' }, 'Created'),
            h('th', { scope: 'col' }, 'Took'))),
          tbody)),
      empty, more),
    submitForm());

  function upsert(b) {
    let row = rows.get(b.id);
    if (!row) {
      row = batchRow(b);
      rows.set(b.id, row);
    } else {
      row.update(b);
    }
    return row;
  }

  async function load() {
    const [batches] = await Promise.all([api('GET', `v1/batches${qs({ limit: PAGE })}`), loadQueues()]);
    const p = page(batches, 'batches');
    const firstIds = new Set(p.items.map((b) => b.id));
    const kept = [...tbody.children].filter((tr) => !firstIds.has(tr.dataset.batchId));
    fill(tbody, p.items.map((b) => upsert(b).el), kept);
    if (!kept.length) next = p.next;
    more.hidden = !next;
    empty.hidden = rows.size > 0;
  }

  async function loadMore() {
    if (!next) return;
    more.disabled = true;
    try {
      const p = page(await api('GET', `v1/batches${qs({ limit: PAGE, cursor: next })}`), 'batches');
      for (const b of p.items) if (!rows.has(b.id)) tbody.append(upsert(b).el);
      next = p.next;
      more.hidden = !next;
    } catch (e) {
      more.after(errorBox(e));
    } finally {
      more.disabled = false;
    }
  }

  async function loadQueues() {
    let data;
    try {
      data = await api('GET', 'v1/queues');
    } catch (e) {
      // Older servers have no queue endpoint: the rest of the page still works.
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        fill(queuesBody, h('p', { class: 'muted' }, 'Queue counts are not available from this server.'));
        return;
      }
      if (e instanceof ApiError && e.status === 401) throw e;
      fill(queuesBody, errorBox(e));
      return;
    }
    renderQueues(normaliseQueues(data));
  }

  function renderQueues(queues) {
    if (!queues.length) {
      fill(queuesBody, h('p', { class: 'muted' }, 'No unfinished jobs in any queue.'));
      return;
    }
    // The server may count only unfinished states: show the states it sends.
    const states = STATES.filter((s) => queues.some((q) => s in q.counts));
    fill(queuesBody, h('div', { class: 'scroll' }, h('table', { class: 'queues' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Queue'),
        states.map((s) => h('th', { scope: 'col', class: `num s-${s}` }, label(s))))),
      h('tbody', {}, queues.map((q) => h('tr', { 'data-queue': q.name },
        h('th', { scope: 'row' }, q.name),
        states.map((s) => h('td', { class: `num${q.counts[s] ? '' : ' zero'}` }, String(q.counts[s] || 0)))))))));
  }

  // The unfiltered stream carries job events only: each burst of them
  // refreshes the first page of batches and the queue counts, once a second
  // at most.
  const reload = throttle(() => load().catch(() => {}), 1000);

  return {
    el,
    // Resume where this tab last was, or start at the present: the page
    // loads the current batches and queues itself, and an unfiltered stream
    // without a cursor would replay every stored job.
    get filter() {
      return { after: sessionStorage.getItem(CURSOR_KEY) || 'now' };
    },
    load,
    onBatch(b) {
      if (!b || !b.id) return;
      const isNew = !rows.has(b.id);
      const row = upsert(b);
      if (isNew) tbody.prepend(row.el);
      empty.hidden = true;
    },
    onJob(_ev, cursor) {
      if (cursor) sessionStorage.setItem(CURSOR_KEY, cursor);
      reload();
    },
    onStreamClosed() {
      // Refused (say, a cursor from another database): start afresh next time.
      sessionStorage.removeItem(CURSOR_KEY);
    },
    destroy() {
      reload.cancel();
    },
  };
}

/** `[{name, counts}]` from whichever shape `/v1/queues` answers with. */
function normaliseQueues(data) {
  let list = data;
  if (data && !Array.isArray(data)) list = data.queues ?? data.items ?? data;
  if (Array.isArray(list)) {
    return list.map((q) => ({ name: q.queue ?? q.name ?? '?', counts: q.counts ?? q }));
  }
  return Object.entries(list || {}).map(([name, counts]) => ({ name, counts: counts || {} }));
}

/** One row of the batches table, updated in place by events. */
function batchRow(b) {
  const bar = progressBar();
  const counts = countsList();
  const state = badge(b.state, 'batch-state');
  const name = h('a', { href: `#/batches/${encodeURIComponent(b.id)}`, 'data-testid': 'batch-link' });
  const created = h('td', {});
  const took = h('td', { class: 'num' });
  const el = h('tr', { 'data-testid': 'batch-row', 'data-batch-id': b.id },
    h('th', { scope: 'row' }, name, h('div', { class: 'muted id' }, b.id)),
    h('td', {}, state),
    h('td', {}, bar.el, counts.el),
    created, took);
  function update(b) {
    name.textContent = b.name || `batch ${String(b.id).slice(-8)}`;
    setBadge(state, b.state);
    bar.update(b);
    counts.update(b.counts);
    fill(created, time(b.created_at));
    const start = b.started_at ?? b.created_at;
    took.textContent = b.finished_at ? duration(b.finished_at - start) : b.started_at ? 'running' : '—';
  }
  update(b);
  return { el, update };
}

function submitForm() {
  const area = h('textarea', { id: 'submit-json', rows: 10, spellcheck: 'false', 'data-testid': 'submit-json' }, EXAMPLE);
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      fill(out);
      let body;
      try {
        body = JSON.parse(area.value);
      } catch (e) {
        fill(out, errorBox({ message: `The batch is not valid JSON: ${e.message}` }));
        return;
      }
      try {
        const res = await api('POST', 'v1/batches', body);
        const id = res?.id ?? res?.batch_id ?? res?.batch?.id;
        if (id) location.hash = `#/batches/${encodeURIComponent(id)}`;
      } catch (e) {
        fill(out, errorBox(e));
      }
    },
  },
  h('label', { for: 'submit-json' }, 'Batch (JSON, as for POST /v1/batches)'), area,
  h('div', {}, h('button', { type: 'submit' }, 'Submit batch')), out);
  return h('details', { class: 'submit' }, h('summary', {}, 'Submit a batch'), form);
}
