-- What `bootloader import-legacy` brought over from an older system's
-- database: one row per older row (by its table and primary key) and the
-- row it became here, so that a second run of the same import changes
-- nothing and says so. `source` names the older database (host, port and
-- name), so two older databases do not mix their ids.
CREATE TABLE older_imports (
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    older_id    TEXT NOT NULL,
    new_id      BIGINT NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, kind, older_id)
);
