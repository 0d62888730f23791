-- Notifications (Slack, email) are sent from the outbox with their own
-- mark, independent of the relay's `sent_at`. Rows from before this
-- migration count as notified, so an upgrade sends nothing old.
ALTER TABLE outbox ADD COLUMN notified_at TIMESTAMPTZ;
UPDATE outbox SET notified_at = created_at;
CREATE INDEX outbox_unnotified ON outbox (id) WHERE notified_at IS NULL
    AND routing_key IN ('deployment.new', 'deployment.complete', 'deployment.error');
