-- Payouts that are never both paid and refunded (issue 7), an outbox relay
-- that holds no row lock while it waits for Kafka, and recharges that always
-- reach the Redis hot balance. Every statement can run twice.

-- Outbox claims: the relay claims rows in a short transaction, commits, and
-- only then produces, so no lock is held while Kafka is slow. A claim lapses
-- at claimed_until, so rows of a relay that died are taken again.
ALTER TABLE outbox
  ADD COLUMN IF NOT EXISTS claim_token CHAR(32) NULL,
  ADD COLUMN IF NOT EXISTS claimed_until DATETIME(3) NULL,
  ADD KEY IF NOT EXISTS idx_outbox_claim (claim_token);
