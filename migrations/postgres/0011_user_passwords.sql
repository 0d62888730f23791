-- Users' passwords for the web console, as argon2id PHC strings. Kept out
-- of `users` so that the read-only role (packaging/postgres-readonly-role.sql),
-- which may read `users`, never sees them.
CREATE TABLE user_passwords (
    user_id    BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
