-- Each daemon reports itself as its location's agent every 30 s while it
-- runs (`location` NULL: it serves every location) and says when it stops;
-- one that stops reporting without saying so is shown as gone. Keyed by
-- the daemon's instance name. `listeners` and `services_down` are JSON.
CREATE TABLE agents (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    location      TEXT,
    url           TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    seen_at       TEXT NOT NULL,
    stopped_at    TEXT,
    listeners     TEXT NOT NULL,
    services_down TEXT NOT NULL
);
