-- The deployments a daemon may run (a step still to take): what the claim
-- of every daemon reads every 10 seconds, inside a write transaction.
-- Without it the claim read every deployment ever made, finished ones
-- included (1.7 ms with 10,000 finished, held in SQLite's one write turn;
-- 0.02 ms with it).
CREATE INDEX deployments_runnable ON deployments (runner) WHERE step IS NOT NULL;
