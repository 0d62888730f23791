-- Web console sessions: the browser holds the secret in its cookie; only
-- its SHA-256 is kept. A session ends at `expires_at`, when it has not
-- been seen for the configured idle time, when its user signs out, or with
-- its user.
CREATE TABLE console_sessions (
    id          INTEGER PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    seen_at     TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- A user's console theme; NULL follows the site's default.
ALTER TABLE users ADD COLUMN theme TEXT;

-- The console's live pages ask which deployments changed since a moment.
CREATE INDEX deployments_updated ON deployments (updated_at);
