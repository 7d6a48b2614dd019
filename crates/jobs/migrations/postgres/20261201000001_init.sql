-- sluice-jobs: schema (PostgreSQL).
-- Times are bigint milliseconds since the Unix epoch, as in SQLite, so both
-- stores share their model; ids are uuid (v7); JSON is jsonb.

CREATE TABLE batches (
    id                    uuid PRIMARY KEY,
    name                  text,
    state                 text NOT NULL,
    total                 bigint NOT NULL,
    -- Jobs per state, changed in the transaction that changes the jobs.
    n_scheduled           bigint NOT NULL DEFAULT 0,
    n_queued              bigint NOT NULL DEFAULT 0,
    n_running             bigint NOT NULL DEFAULT 0,
    n_retrying            bigint NOT NULL DEFAULT 0,
    n_succeeded           bigint NOT NULL DEFAULT 0,
    n_failed              bigint NOT NULL DEFAULT 0,
    n_cancelled           bigint NOT NULL DEFAULT 0,
    n_timed_out           bigint NOT NULL DEFAULT 0,
    on_dependency_failure text NOT NULL,
    cancel_requested      boolean NOT NULL DEFAULT false,
    callbacks             jsonb NOT NULL,
    callback_plans        jsonb NOT NULL,
    callback_jobs         jsonb NOT NULL DEFAULT '[]',
    -- Indexes into callback_plans of the callbacks that have fired, so a
    -- batch reopened by a manual retry never fires one twice.
    callbacks_fired       jsonb NOT NULL DEFAULT '[]',
    created_at            bigint NOT NULL,
    started_at            bigint,
    finished_at           bigint,
    -- A client's idempotency key: a second submission with the same key
    -- gets the first batch's answer (`submitted`, the job ids as first
    -- answered) instead of a second batch.
    idempotency_key       text,
    submitted             jsonb
);

CREATE INDEX batches_finished ON batches (finished_at) WHERE state <> 'running';
CREATE UNIQUE INDEX batches_idempotency ON batches (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- No foreign key to batches: every insert would lock its batch row, and
-- prune deletes jobs before their batch anyway.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    batch_id         uuid,
    queue            text NOT NULL,
    kind             text NOT NULL,
    args             jsonb NOT NULL,
    priority         integer NOT NULL,
    state            text NOT NULL,
    run_at           bigint NOT NULL,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    timeout_ms       bigint NOT NULL,
    backoff          jsonb NOT NULL,
    result           jsonb,
    errors           jsonb NOT NULL DEFAULT '[]',
    progress         double precision NOT NULL DEFAULT 0,
    -- Dependencies not yet finished as required.
    pending_deps     integer NOT NULL DEFAULT 0,
    unique_key       text,
    worker           text,
    -- Fencing token: + 1 per claim; completions and heartbeats must match it.
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    started_at       bigint,
    finished_at      bigint,
    -- The id of the transaction that last changed the job's state, result
    -- or progress (pg_current_xact_id() as bigint). Sequences are not
    -- commit-ordered; transaction ids below the snapshot's xmin are all
    -- settled, so the change stream reads only those and misses nothing.
    change_xid       bigint NOT NULL
);

-- Claim: the best queued job of a queue.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
-- Promotion of scheduled and retrying jobs that came due.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retrying') AND pending_deps = 0;
-- Rescue of expired leases.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_batch ON jobs (batch_id, id);
-- Queue counts (GET /v1/queues, queue-depth gauges): unfinished jobs only,
-- so it stays small.
CREATE INDEX jobs_open_queue ON jobs (queue, state)
    WHERE state IN ('scheduled', 'queued', 'running', 'retrying');
-- Pruning.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- One unfinished job per unique key.
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running', 'retrying');
-- The change stream, all jobs and per batch.
CREATE INDEX jobs_changes ON jobs (change_xid, id);
CREATE INDEX jobs_batch_changes ON jobs (batch_id, change_xid, id);

CREATE TABLE job_deps (
    depends_on uuid NOT NULL,
    job_id     uuid NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);

CREATE INDEX job_deps_job ON job_deps (job_id);
