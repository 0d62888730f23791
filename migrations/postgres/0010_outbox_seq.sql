-- The order events are published in. Outbox ids come from the insert, and
-- with writers side by side a smaller id can commit after a larger one; the
-- relay stamps each row it is about to publish with the next value of
-- outbox_seq, in the order rows become visible to it, and publishes by it.
-- Consumers see this number as the event id, and it only grows. It starts
-- above every id already handed out, so it continues from what consumers
-- have seen.
ALTER TABLE outbox ADD COLUMN seq BIGINT;
CREATE SEQUENCE outbox_seq;
SELECT setval('outbox_seq', nextval(pg_get_serial_sequence('outbox', 'id')));
CREATE INDEX outbox_unsent_seq ON outbox (seq) WHERE sent_at IS NULL;
