-- What the older system kept and its API still exposes: a user's first
-- and last name and whether the user may sign in at all (an inactive
-- user's tokens, sessions and password stop working; nothing is
-- deleted), and secrets attached to a server by name (the older
-- `credentials`: `ipmi_username` and `ipmi_password` are the BMC login
-- when the server names none of its own). `data_sealed` is sealed like
-- BMC passwords.
ALTER TABLE users ADD COLUMN first_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN last_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN is_active BOOLEAN NOT NULL DEFAULT 1;

CREATE TABLE server_secrets (
    id          INTEGER PRIMARY KEY,
    server_id   INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    data_sealed BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX server_secrets_server ON server_secrets (server_id, name);

-- Options an operator adds to a network's replies (what the older agent's
-- DNSMASQ_OPTS gave): [{"code": 42, "value": "10.0.0.5"}], checked when
-- written.
ALTER TABLE networks ADD COLUMN dhcp_options TEXT NOT NULL DEFAULT '[]';
