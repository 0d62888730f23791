-- Several daemons may share one database. Each deployment's steps run in
-- one daemon at a time: the one named in `runner`, for as long as it keeps
-- renewing `runner_until` (unix seconds). A daemon that stops renewing (it
-- died) loses its deployments to another daemon of the location.
ALTER TABLE deployments ADD COLUMN runner TEXT;
ALTER TABLE deployments ADD COLUMN runner_until INTEGER;

-- Named duties that one daemon at a time performs (the outbox relay, so
-- that events keep their order), held by renewing `until_unix`.
CREATE TABLE daemon_locks (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    until_unix INTEGER NOT NULL
);
