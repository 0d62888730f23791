-- A server's deployments, newest first: the server list filtered by the
-- state of each server's last deployment, and a server's deployment
-- history, read them by server. Without it each server's look-up read
-- every deployment (the partial index `deployments_one_active` holds only
-- the active ones): O(servers x deployments), 3 s for a list of 10,000
-- servers.
CREATE INDEX deployments_server ON deployments (server_id, id);
