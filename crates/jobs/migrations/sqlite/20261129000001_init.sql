-- sluice-jobs: initial schema (SQLite).
-- Times are INTEGER milliseconds since the Unix epoch; ids are UUID v7 BLOBs;
-- JSON is TEXT.

CREATE TABLE batches (
    id                    BLOB PRIMARY KEY NOT NULL,
    name                  TEXT,
    state                 TEXT NOT NULL,
    total                 INTEGER NOT NULL,
    -- Jobs per state, changed in the transaction that changes the jobs.
    n_scheduled           INTEGER NOT NULL DEFAULT 0,
    n_queued              INTEGER NOT NULL DEFAULT 0,
    n_running             INTEGER NOT NULL DEFAULT 0,
    n_retrying            INTEGER NOT NULL DEFAULT 0,
    n_succeeded           INTEGER NOT NULL DEFAULT 0,
    n_failed              INTEGER NOT NULL DEFAULT 0,
    n_cancelled           INTEGER NOT NULL DEFAULT 0,
    n_timed_out           INTEGER NOT NULL DEFAULT 0,
    on_dependency_failure TEXT NOT NULL,
    cancel_requested      INTEGER NOT NULL DEFAULT 0,
    callbacks             TEXT NOT NULL,
    callback_plans        TEXT NOT NULL,
    callback_jobs         TEXT NOT NULL DEFAULT '[]',
    created_at            INTEGER NOT NULL,
    started_at            INTEGER,
    finished_at           INTEGER
);

CREATE INDEX batches_finished ON batches (finished_at) WHERE state <> 'running';

CREATE TABLE jobs (
    id               BLOB PRIMARY KEY NOT NULL,
    batch_id         BLOB,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    args             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    run_at           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    backoff          TEXT NOT NULL,
    result           TEXT,
    errors           TEXT NOT NULL DEFAULT '[]',
    progress         REAL NOT NULL DEFAULT 0,
    -- Dependencies not yet finished as required.
    pending_deps     INTEGER NOT NULL DEFAULT 0,
    unique_key       TEXT,
    worker           TEXT,
    -- Fencing token: + 1 per claim; completions and heartbeats must match it.
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);

-- Claim: the best queued job of a queue.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
-- Promotion of scheduled and retrying jobs that came due.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('scheduled', 'retrying') AND pending_deps = 0;
-- Rescue of expired leases.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_batch ON jobs (batch_id, id);
-- Pruning.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- One unfinished job per unique key.
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running', 'retrying');

CREATE TABLE job_deps (
    depends_on BLOB NOT NULL,
    job_id     BLOB NOT NULL,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;

CREATE INDEX job_deps_job ON job_deps (job_id);
