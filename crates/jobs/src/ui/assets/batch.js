// The batch view (`#/batches/ID?state=…`): the batch's progress and counts,
// its jobs filtered by state one page at a time ("load more" follows the
// cursor, so a batch of thousands of jobs renders only what is asked for),
// and a cancel button. Rows update in place from `job` events.

import { api, page, qs } from './api.js';
import {
  FINAL, STATES, badge, countsList, dangerButton, duration, fill, h, label, lastError, progressBar, setBadge,
  throttle, time, toast,
} from './dom.js';

const PAGE = 100;

/** The view of batch `id`, listing jobs in `state` (all when empty). */
export function batchView(id, state) {
  const rows = new Map();
  let next = null;
  let batch = null;

  const title = h('h1', {}, 'Batch');
  const stateBadge = badge('running', 'batch-state');
  const bar = progressBar('batch-progress');
  const counts = countsList('batch-counts');
  const meta = h('dl', { class: 'meta' });
  const filters = h('nav', { class: 'filters', 'aria-label': 'Filter jobs by state', 'data-testid': 'state-filters' });
  const cancel = dangerButton('Cancel batch', 'cancel-batch', async () => {
    try {
      const res = await api('DELETE', `v1/batches/${encodeURIComponent(id)}`);
      const n = res?.cancelled ?? res?.count;
      toast(n != null ? `Cancelled ${n} job${n === 1 ? '' : 's'}.` : 'Batch cancelled.');
    } catch (e) {
      toast(`Cancel failed: ${e.message}`, 'error');
    }
  });
  const tbody = h('tbody', {});
  const more = h('button', { type: 'button', hidden: true, 'data-testid': 'load-more', onclick: loadMore }, 'Load more jobs');
  const empty = h('p', { class: 'muted', hidden: true, 'data-testid': 'no-jobs' }, state ? `No ${label(state)} jobs.` : 'No jobs.');
  const shown = h('p', { class: 'muted', 'aria-live': 'polite' });

  const el = h('div', { class: 'batch', 'data-testid': 'batch-view', 'data-batch-id': id },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Overview'), ' / batch'),
    h('div', { class: 'head' }, title, stateBadge, h('span', { class: 'spacer' }), cancel),
    bar.el, counts.el, meta, filters,
    h('div', { class: 'scroll' }, h('table', { class: 'jobs', 'data-testid': 'job-table' },
      h('thead', {}, h('tr', {},
        ['Job', 'Kind', 'Queue', 'State', 'Attempt', 'Last error', 'Updated'].map((c) =>
          h('th', { scope: 'col', class: c === 'Attempt' ? 'num' : null }, c)))),
      tbody)),
    empty, shown, more);

  function renderBatch(b) {
    batch = b;
    title.textContent = b.name ? `Batch ${b.name}` : 'Batch';
    setBadge(stateBadge, b.state);
    bar.update(b);
    counts.update(b.counts);
    cancel.hidden = b.state !== 'running';
    const start = b.started_at ?? null;
    fill(meta,
      h('dt', {}, 'Id'), h('dd', {}, h('code', {}, b.id)),
      h('dt', {}, 'Submitted'), h('dd', {}, time(b.created_at)),
      h('dt', {}, 'Started'), h('dd', {}, time(b.started_at)),
      h('dt', {}, 'Finished'), h('dd', {}, time(b.finished_at)),
      h('dt', {}, 'Took'), h('dd', {}, b.finished_at && start != null ? duration(b.finished_at - start) : '—'),
      b.on_dependency_failure ? [h('dt', {}, 'On dependency failure'), h('dd', {}, b.on_dependency_failure)] : null);
    renderFilters(b);
  }

  function renderFilters(b) {
    const link = (s, text) => h('a', {
      href: `#/batches/${encodeURIComponent(id)}${s ? `?state=${s}` : ''}`,
      class: `chip${s ? ` s-${s}` : ''}`, 'aria-current': s === state ? 'page' : null,
      'data-testid': 'state-filter', 'data-state': s || 'all',
    }, text);
    fill(filters, link('', `all ${b.total ?? ''}`),
      STATES.filter((s) => (b.counts?.[s] || 0) > 0 || s === state).map((s) => link(s, `${label(s)} ${b.counts?.[s] || 0}`)));
  }

  function upsert(job) {
    let row = rows.get(job.id);
    if (row) {
      row.update(job);
    } else {
      row = jobRow(job);
      rows.set(job.id, row);
    }
    row.el.classList.toggle('stale', !!state && row.job.state !== state);
    return row;
  }

  function updateShown() {
    empty.hidden = rows.size > 0;
    shown.textContent = rows.size ? `Showing ${rows.size}${next ? ' (more below)' : ''}.` : '';
    more.hidden = !next;
  }

  async function load() {
    const [b, jobs] = await Promise.all([
      api('GET', `v1/batches/${encodeURIComponent(id)}`),
      api('GET', `v1/batches/${encodeURIComponent(id)}/jobs${qs({ state, limit: PAGE })}`),
    ]);
    renderBatch(b);
    const p = page(jobs, 'jobs');
    const firstIds = new Set(p.items.map((j) => j.id));
    const kept = [...tbody.children].filter((tr) => !firstIds.has(tr.dataset.jobId));
    fill(tbody, p.items.map((j) => upsert(j).el), kept);
    if (!kept.length) next = p.next;
    updateShown();
  }

  async function loadMore() {
    if (!next) return;
    more.disabled = true;
    try {
      const p = page(await api('GET', `v1/batches/${encodeURIComponent(id)}/jobs${qs({ state, limit: PAGE, cursor: next })}`), 'jobs');
      for (const j of p.items) if (!rows.has(j.id)) tbody.append(upsert(j).el);
      next = p.next;
      updateShown();
    } catch (e) {
      toast(`Loading more jobs failed: ${e.message}`, 'error');
    } finally {
      more.disabled = false;
    }
  }

  // A batch of thousands of jobs sends thousands of events: keep the latest
  // per job and per batch, and touch the DOM a few times a second at most.
  const pendingJobs = new Map();
  let pendingBatch = null;
  const flush = throttle(() => {
    if (pendingBatch) renderBatch(pendingBatch);
    pendingBatch = null;
    for (const ev of pendingJobs.values()) {
      const row = rows.get(ev.id);
      if (row) {
        if (ev.updated_at == null || row.job.updated_at == null || ev.updated_at >= row.job.updated_at) {
          upsert({ ...row.job, ...ev });
        }
      } else if (!next && (!state || ev.state === state)) {
        // Every matching job is on screen: one that newly matches joins the list.
        tbody.append(upsert(ev).el);
      }
    }
    pendingJobs.clear();
    updateShown();
  }, 100);

  return {
    el,
    filter: { batch: id },
    load,
    onBatch(b) {
      if (b?.id !== id) return;
      pendingBatch = batch ? { ...batch, ...b } : b;
      flush();
    },
    onJob(ev) {
      if (!ev?.id || (ev.batch_id && ev.batch_id !== id)) return;
      pendingJobs.set(ev.id, ev);
      flush();
    },
    destroy() {
      flush.cancel();
    },
  };
}

/** One job's row, updated in place. */
function jobRow(job) {
  const state = badge(job.state, 'job-state');
  const attempt = h('td', { class: 'num' });
  const err = h('td', { class: 'err', 'data-testid': 'job-error' });
  const updated = h('td', {});
  const el = h('tr', { 'data-testid': 'job-row', 'data-job-id': job.id },
    h('th', { scope: 'row' }, h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'id', title: job.id }, String(job.id).slice(-12))),
    h('td', {}, job.kind ?? ''), h('td', {}, job.queue ?? ''),
    h('td', {}, state), attempt, err, updated);
  const row = {
    el,
    job,
    update(j) {
      row.job = j;
      setBadge(state, j.state);
      el.dataset.state = j.state;
      const progress = j.state === 'running' && j.progress > 0 ? ` · ${Math.round(j.progress * 100)}%` : '';
      attempt.textContent = `${j.attempt ?? 0}${j.max_attempts ? `/${j.max_attempts}` : ''}${progress}`;
      const e = lastError(j);
      err.textContent = e ? `${e.kind ? `${label(e.kind)}: ` : ''}${e.message ?? ''}` : '';
      err.title = err.textContent;
      err.classList.toggle('muted', !!e && !FINAL.has(j.state));
      fill(updated, time(j.updated_at));
    },
  };
  row.update(job);
  return row;
}
