-- The deployment engine: where each deployment stands in its profile, its
-- deadline, why it failed, and its log.

-- The callback token, sealed like BMC passwords: templates render
-- `callback_base` again after a restart. Deployments without one (made
-- before the engine, or by tests through the store) are not run by it.
ALTER TABLE deployments ADD COLUMN token_sealed BLOB;
-- The cursor: the step and the index of the next action to run; step is
-- NULL once nothing is left to run.
ALTER TABLE deployments ADD COLUMN step TEXT;
ALTER TABLE deployments ADD COLUMN action_index INTEGER NOT NULL DEFAULT 0;
-- Actions of the six main steps finished (progress).
ALTER TABLE deployments ADD COLUMN actions_done INTEGER NOT NULL DEFAULT 0;
-- When the running action (and the running step, if it has a timeout of
-- its own) must be done, Unix seconds; kept across restarts.
ALTER TABLE deployments ADD COLUMN action_deadline INTEGER;
ALTER TABLE deployments ADD COLUMN step_deadline INTEGER;
ALTER TABLE deployments ADD COLUMN error TEXT;
ALTER TABLE deployments ADD COLUMN repeat_of INTEGER REFERENCES deployments(id) ON DELETE SET NULL;
ALTER TABLE deployments ADD COLUMN finished_at TEXT;
UPDATE deployments SET step = state
    WHERE state IN ('new', 'preparing', 'installing', 'configuring', 'postconfiguring');

CREATE TABLE deployment_log (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    level         TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    message       TEXT NOT NULL
);
CREATE INDEX deployment_log_deployment ON deployment_log (deployment_id, id);
