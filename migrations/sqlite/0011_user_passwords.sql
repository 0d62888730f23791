-- Users' passwords for the web console, as argon2id PHC strings. Kept out
-- of `users` so that readers granted that table never see them.
CREATE TABLE user_passwords (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
