// The job view (`#/jobs/ID`): its fields, args, every attempt's error, the
// result, and cancel / retry buttons. Job events are compact, so each one
// triggers a (coalesced) fetch of the full job.

import { api } from './api.js';
import { FINAL, badge, dangerButton, duration, fill, h, json, label, setBadge, throttle, time, toast } from './dom.js';

// A retry reopens a final job; a retrying job can skip its backoff.
const RETRYABLE = new Set(['failed', 'cancelled', 'timed_out', 'retrying']);

/** The view of job `id`. */
export function jobView(id) {
  const title = h('h1', {}, 'Job');
  const stateBadge = badge('queued', 'job-state');
  const crumbs = h('p', { class: 'crumbs' });
  const meta = h('dl', { class: 'meta', 'data-testid': 'job-meta' });
  const progress = h('progress', { max: 1, value: 0, 'aria-label': 'Progress of the running attempt', hidden: true });
  const args = h('section', { 'aria-labelledby': 'args-h' });
  const errors = h('section', { 'aria-labelledby': 'errors-h' });
  const result = h('section', { 'aria-labelledby': 'result-h' });

  const cancel = dangerButton('Cancel job', 'cancel-job', async () => {
    try {
      await api('DELETE', `v1/jobs/${encodeURIComponent(id)}`);
      toast('Job cancelled.');
      reload();
    } catch (e) {
      toast(`Cancel failed: ${e.message}`, 'error');
    }
  });
  const retry = h('button', {
    type: 'button', 'data-testid': 'retry-job',
    onclick: async () => {
      retry.disabled = true;
      try {
        await api('POST', `v1/jobs/${encodeURIComponent(id)}/retry`);
        toast('Job queued again.');
        reload();
      } catch (e) {
        toast(`Retry failed: ${e.message}`, 'error');
      } finally {
        retry.disabled = false;
      }
    },
  }, 'Retry');

  const el = h('div', { class: 'job', 'data-testid': 'job-view', 'data-job-id': id },
    crumbs,
    h('div', { class: 'head' }, title, stateBadge, h('span', { class: 'spacer' }), retry, cancel),
    progress, meta, args, errors, result);

  function render(j) {
    title.textContent = `Job ${j.kind}`;
    setBadge(stateBadge, j.state);
    el.dataset.state = j.state;
    fill(crumbs, h('a', { href: '#/' }, 'Overview'), ' / ',
      j.batch_id ? [h('a', { href: `#/batches/${encodeURIComponent(j.batch_id)}`, 'data-testid': 'job-batch-link' }, 'batch'), ' / '] : null,
      'job');
    cancel.hidden = FINAL.has(j.state);
    retry.hidden = !RETRYABLE.has(j.state);
    progress.hidden = j.state !== 'running';
    progress.value = j.progress || 0;
    const ran = j.finished_at && j.started_at ? duration(j.finished_at - j.started_at) : '—';
    fill(meta,
      h('dt', {}, 'Id'), h('dd', {}, h('code', {}, j.id)),
      h('dt', {}, 'Kind'), h('dd', {}, j.kind),
      h('dt', {}, 'Queue'), h('dd', {}, j.queue),
      h('dt', {}, 'Priority'), h('dd', {}, String(j.priority ?? 0)),
      h('dt', {}, 'Attempt'), h('dd', { 'data-testid': 'job-attempt' }, `${j.attempt ?? 0} of ${j.max_attempts ?? '?'}`),
      j.timeout_ms != null ? [h('dt', {}, 'Timeout'), h('dd', {}, duration(j.timeout_ms))] : null,
      j.state === 'running' ? [h('dt', {}, 'Progress'), h('dd', {}, `${Math.round((j.progress || 0) * 100)}%`)] : null,
      j.worker ? [h('dt', {}, 'Worker'), h('dd', {}, j.worker)] : null,
      j.unique_key ? [h('dt', {}, 'Unique key'), h('dd', {}, h('code', {}, j.unique_key))] : null,
      j.depends_on?.length ? [h('dt', {}, 'Depends on'), h('dd', {}, j.depends_on.map((d, i) =>
        [i ? ', ' : '', h('a', { href: `#/jobs/${encodeURIComponent(d)}`, class: 'id' }, String(d).slice(-12))]))] : null,
      h('dt', {}, 'Submitted'), h('dd', {}, time(j.created_at)),
      h('dt', {}, 'Runs at'), h('dd', {}, time(j.run_at)),
      h('dt', {}, 'Started'), h('dd', {}, time(j.started_at)),
      h('dt', {}, 'Finished'), h('dd', {}, time(j.finished_at)),
      h('dt', {}, 'Ran'), h('dd', {}, ran));
    fill(args, h('h2', { id: 'args-h' }, 'Args'), json(j.args, 'job-args'));
    const errs = j.errors || [];
    fill(errors, h('h2', { id: 'errors-h' }, `Errors (${errs.length})`),
      errs.length
        ? h('ol', { class: 'errors', 'data-testid': 'job-errors' }, errs.map((e) => h('li', { 'data-testid': 'job-error' },
          h('div', { class: 'err-head' }, h('strong', {}, e.attempt ? `Attempt ${e.attempt}` : 'Outside an attempt'),
            ' · ', h('span', { class: 'badge s-failed' }, label(e.kind)), ' · ', time(e.at)),
          h('pre', { class: 'err-msg' }, e.message))))
        : h('p', { class: 'muted' }, 'None.'));
    fill(result, h('h2', { id: 'result-h' }, 'Result'),
      j.state === 'succeeded' || j.result != null
        ? json(j.result, 'job-result')
        : h('p', { class: 'muted' }, FINAL.has(j.state) ? 'None: the job did not succeed.' : 'Not yet.'));
  }

  async function load() {
    render(await api('GET', `v1/jobs/${encodeURIComponent(id)}`));
  }

  const reload = throttle(() => load().catch((e) => toast(`Refresh failed: ${e.message}`, 'error')), 300);

  return {
    el,
    filter: { job: id },
    load,
    onJob(ev) {
      if (ev?.id === id) reload();
    },
    destroy() {
      reload.cancel();
    },
  };
}
