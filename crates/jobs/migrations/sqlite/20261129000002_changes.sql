-- sluice-jobs: the change stream (SSE) and manual retries.

-- Commit order of a job's latest change: the writer's group number for the
-- commit that last changed its state, result or progress. Events read
-- `(change_seq, id)` after a cursor.
ALTER TABLE jobs ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_changes ON jobs (change_seq, id);
CREATE INDEX jobs_batch_changes ON jobs (batch_id, change_seq, id);

-- Indexes into callback_plans of the callbacks that have fired, so a batch
-- reopened by a manual retry never fires one twice.
ALTER TABLE batches ADD COLUMN callbacks_fired TEXT NOT NULL DEFAULT '[]';
