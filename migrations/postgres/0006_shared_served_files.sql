-- Several active deployments may serve the same path when they serve the
-- same bytes (a rack installing from one kernel): one row per deployment
-- and path.
ALTER TABLE served_files DROP CONSTRAINT served_files_via_path_key;
ALTER TABLE served_files ADD CONSTRAINT served_files_deployment_via_path_key
    UNIQUE (deployment_id, via, path);
CREATE INDEX served_files_path ON served_files (via, path);
