-- Power control: each server's BMC health, and power commands in the boot
-- timeline (phase 'power').

CREATE TABLE power_health (
    server_id            INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    last_success_at      TEXT,
    last_failure_at      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- The last failure: its kind (auth, unreachable, timeout, refused, ...)
    -- and message, kept after a later success.
    last_error_kind      TEXT,
    last_error           TEXT,
    last_command         TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

-- SQLite cannot change a CHECK constraint in place.
CREATE TABLE boot_events_new (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    mac     TEXT,
    peer    TEXT NOT NULL,
    phase   TEXT NOT NULL CHECK (phase IN ('dhcp', 'tftp', 'http', 'power')),
    request TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('answered', 'silent', 'refused', 'failed', 'done')),
    detail  TEXT NOT NULL DEFAULT ''
);
INSERT INTO boot_events_new (id, at, mac, peer, phase, request, outcome, detail)
    SELECT id, at, mac, peer, phase, request, outcome, detail FROM boot_events;
DROP TABLE boot_events;
ALTER TABLE boot_events_new RENAME TO boot_events;
CREATE INDEX boot_events_mac ON boot_events (mac, id);
CREATE INDEX boot_events_at ON boot_events (at);
