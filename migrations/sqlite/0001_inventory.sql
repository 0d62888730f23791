-- Inventory, users, tokens, profiles and the event outbox (SQLite dialect).
-- Timestamps are RFC 3339 text in UTC; booleans are 0/1.

CREATE TABLE locations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE networks (
    id          INTEGER PRIMARY KEY,
    location_id INTEGER NOT NULL REFERENCES locations(id) ON DELETE RESTRICT,
    cidr        TEXT NOT NULL,
    gateway     TEXT,
    nameservers TEXT NOT NULL DEFAULT '',
    domain      TEXT,
    pool_start  TEXT,
    pool_end    TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (location_id, cidr)
);

CREATE TABLE labels (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

CREATE TABLE credentials (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    username           TEXT NOT NULL,
    password_encrypted BLOB NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

CREATE TABLE servers (
    id                     INTEGER PRIMARY KEY,
    fqdn                   TEXT NOT NULL UNIQUE,
    location_id            INTEGER NOT NULL REFERENCES locations(id) ON DELETE RESTRICT,
    serial                 TEXT NOT NULL DEFAULT '',
    notes                  TEXT NOT NULL DEFAULT '',
    bmc_host               TEXT,
    bmc_port               INTEGER NOT NULL DEFAULT 623,
    bmc_username           TEXT,
    bmc_password_encrypted BLOB,
    bmc_credential_id      INTEGER REFERENCES credentials(id) ON DELETE RESTRICT,
    bmc_driver             TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX servers_location ON servers (location_id);

CREATE TABLE server_labels (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    label_id  INTEGER NOT NULL REFERENCES labels(id) ON DELETE RESTRICT,
    PRIMARY KEY (server_id, label_id)
);
CREATE INDEX server_labels_label ON server_labels (label_id);

CREATE TABLE interfaces (
    id         INTEGER PRIMARY KEY,
    server_id  INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    mac        TEXT NOT NULL UNIQUE,
    ipv4       TEXT,
    network_id INTEGER REFERENCES networks(id) ON DELETE RESTRICT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (server_id, name),
    UNIQUE (network_id, ipv4)
);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    email      TEXT NOT NULL DEFAULT '',
    is_staff   BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    description  TEXT NOT NULL DEFAULT '',
    expires_at   TEXT,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE ssh_authorized_keys (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL DEFAULT '',
    key        TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (user_id, key)
);

CREATE TABLE profiles (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    source     TEXT NOT NULL,
    -- Actions over the six main steps, the denominator of progress.
    action_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (name, version)
);

-- Every change is written here in the same transaction as the change
-- itself; a relay publishes the rows and sets sent_at.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    routing_key TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    sent_at     TEXT
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
