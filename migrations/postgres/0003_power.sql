-- Power control: each server's BMC health, and power commands in the boot
-- timeline (phase 'power').

CREATE TABLE power_health (
    server_id            BIGINT PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    last_success_at      TIMESTAMPTZ,
    last_failure_at      TIMESTAMPTZ,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- The last failure: its kind (auth, unreachable, timeout, refused, ...)
    -- and message, kept after a later success.
    last_error_kind      TEXT,
    last_error           TEXT,
    last_command         TEXT NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

ALTER TABLE boot_events DROP CONSTRAINT boot_events_phase_check;
ALTER TABLE boot_events ADD CONSTRAINT boot_events_phase_check
    CHECK (phase IN ('dhcp', 'tftp', 'http', 'power'));
