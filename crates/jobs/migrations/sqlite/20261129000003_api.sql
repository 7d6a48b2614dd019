-- sluice-jobs: what the REST API needs (idempotent batch submission, queue
-- counts).

-- A client's idempotency key: a second submission with the same key gets
-- the first batch's answer (`submitted`, the JSON list of job ids as first
-- answered) instead of a second batch.
ALTER TABLE batches ADD COLUMN idempotency_key TEXT;
ALTER TABLE batches ADD COLUMN submitted TEXT;
CREATE UNIQUE INDEX batches_idempotency ON batches (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- GET /v1/queues and the queue-depth gauges count unfinished jobs per queue
-- and state; this index holds only unfinished jobs, so it stays small.
CREATE INDEX jobs_open_queue ON jobs (queue, state)
    WHERE state IN ('scheduled', 'queued', 'running', 'retrying');
