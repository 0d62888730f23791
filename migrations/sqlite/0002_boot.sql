-- The network boot path: deployments (the engine fills in the rest of
-- their life), the files they serve, DHCP leases and the boot timeline.

CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    server_id   INTEGER NOT NULL REFERENCES servers(id) ON DELETE RESTRICT,
    profile_id  INTEGER NOT NULL REFERENCES profiles(id) ON DELETE RESTRICT,
    state       TEXT NOT NULL CHECK (state IN ('new', 'preparing', 'installing', 'configuring',
                    'postconfiguring', 'complete', 'error', 'cancelled')),
    -- SHA-256 of the callback token; the token itself is never stored.
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- One active deployment per server.
CREATE UNIQUE INDEX deployments_one_active ON deployments (server_id)
    WHERE state NOT IN ('complete', 'error', 'cancelled');

-- Files a deployment serves, rendered once per interface. Only files of an
-- active deployment are served.
CREATE TABLE served_files (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    via           TEXT NOT NULL CHECK (via IN ('http', 'tftp')),
    path          TEXT NOT NULL,
    content       BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (via, path)
);
CREATE INDEX served_files_deployment ON served_files (deployment_id);

-- One row per address ever handed out in a network. An expired or released
-- row is free; a new client takes it over in place. Times are Unix seconds.
CREATE TABLE leases (
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    ip         TEXT NOT NULL,
    mac        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
    expires_at INTEGER NOT NULL,
    hostname   TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (network_id, ip)
);
CREATE INDEX leases_mac ON leases (mac);

-- What happened when a MAC tried to boot: every DHCP, TFTP and HTTP event,
-- with what we answered or why we stayed silent.
CREATE TABLE boot_events (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    mac     TEXT,
    peer    TEXT NOT NULL,
    phase   TEXT NOT NULL CHECK (phase IN ('dhcp', 'tftp', 'http')),
    request TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'silent', 'refused', 'failed', 'done')),
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX boot_events_mac ON boot_events (mac, id);
CREATE INDEX boot_events_at ON boot_events (at);

-- Callbacks the machine made to `{callback_base}NAME`, kept until the
-- engine consumes them: a callback may arrive before its step starts.
-- A replay of the same name is a no-op.
CREATE TABLE callbacks (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    method        TEXT NOT NULL,
    body          TEXT NOT NULL DEFAULT '',
    received_at   TEXT NOT NULL,
    UNIQUE (deployment_id, name)
);
