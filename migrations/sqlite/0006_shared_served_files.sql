-- Several active deployments may serve the same path when they serve the
-- same bytes (a rack installing from one kernel): one row per deployment
-- and path. SQLite cannot drop a constraint in place.
CREATE TABLE served_files_new (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    via           TEXT NOT NULL CHECK (via IN ('http', 'tftp')),
    path          TEXT NOT NULL,
    content       BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    file_path     TEXT,
    UNIQUE (deployment_id, via, path)
);
INSERT INTO served_files_new (id, deployment_id, via, path, content, created_at, file_path)
    SELECT id, deployment_id, via, path, content, created_at, file_path FROM served_files;
DROP TABLE served_files;
ALTER TABLE served_files_new RENAME TO served_files;
CREATE INDEX served_files_deployment ON served_files (deployment_id);
CREATE INDEX served_files_path ON served_files (via, path);
