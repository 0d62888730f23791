-- The order events are published in (see the PostgreSQL migration). SQLite
-- has one writer at a time, so rows become visible in id order; the
-- relay's counter lives in settings so that it keeps growing even after
-- the outbox was pruned empty and ids start again.
ALTER TABLE outbox ADD COLUMN seq INTEGER;
INSERT INTO settings (key, value)
    SELECT 'outbox_seq', CAST(COALESCE(MAX(id), 0) AS TEXT) FROM outbox;
CREATE INDEX outbox_unsent_seq ON outbox (seq) WHERE sent_at IS NULL;
