-- Payouts that are never both paid and refunded (issue 7), an outbox relay
-- that holds no row lock while it waits for Kafka, and recharges that always
-- reach the Redis hot balance. Every statement can run twice.

-- Withdrawals: the payout key, the payout schedule and what an operator
-- must look at.
ALTER TABLE withdrawals
  -- The provider idempotency key: random per withdrawal, so it is unique
  -- across installations and database restores. NULL on rows created before
  -- this migration, which keep the key "withdrawal-<id>".
  ADD COLUMN IF NOT EXISTS payout_key VARCHAR(100) NULL AFTER payout_txn,
  -- When a worker next works on the payout. NULL until the payout consumer
  -- has seen the withdrawal, and again once it is decided or flagged. A
  -- worker that takes the payout moves it into the future: a lease that
  -- lapses by itself if that worker dies.
  ADD COLUMN IF NOT EXISTS next_attempt_at DATETIME(3) NULL AFTER attempts,
  -- Settling rounds (void, then status) whose outcome was unknown: the
  -- withdrawal stays pending and is asked about again, later each time.
  ADD COLUMN IF NOT EXISTS unresolved INT NOT NULL DEFAULT 0 AFTER next_attempt_at,
  -- Why an operator must look (key_reused, mismatch, paid_after_refund,
  -- paid_twice), with the provider transaction that came with it. A
  -- flagged pending withdrawal is neither paid again nor refunded by the
  -- worker.
  ADD COLUMN IF NOT EXISTS conflict VARCHAR(32) NULL,
  ADD COLUMN IF NOT EXISTS conflict_txn VARCHAR(64) NULL,
  ADD COLUMN IF NOT EXISTS conflict_at DATETIME(3) NULL,
  ADD UNIQUE KEY IF NOT EXISTS uk_withdrawals_payout_key (payout_key),
  ADD KEY IF NOT EXISTS idx_withdrawals_due (status, next_attempt_at);

-- Withdrawals pending at the upgrade are due now: the worker takes them up
-- whether or not their message comes again.
UPDATE withdrawals SET next_attempt_at = NOW(3) WHERE status = 'pending' AND next_attempt_at IS NULL;

-- Outbox claims: the relay claims rows in a short transaction, commits, and
-- only then produces, so no lock is held while Kafka is slow. A claim lapses
-- at claimed_until, so rows of a relay that died are taken again.
ALTER TABLE outbox
  ADD COLUMN IF NOT EXISTS claim_token CHAR(32) NULL,
  ADD COLUMN IF NOT EXISTS claimed_until DATETIME(3) NULL,
  ADD KEY IF NOT EXISTS idx_outbox_claim (claim_token);

-- Set once the recharge is in the Redis hot balance (by the notify, or by the
-- worker's repair sweep of paid orders that lack it).
ALTER TABLE pay_orders
  ADD COLUMN IF NOT EXISTS hot_credited_at DATETIME(3) NULL,
  ADD KEY IF NOT EXISTS idx_pay_orders_hot (status, hot_credited_at, paid_at);

-- Recharges paid more than a day before the upgrade are taken as credited
-- (the sweep would otherwise resync every payer ever). Younger ones are
-- checked once by the sweep, which is harmless when they were credited.
UPDATE pay_orders SET hot_credited_at = paid_at
  WHERE status = 'paid' AND hot_credited_at IS NULL AND paid_at < NOW(3) - INTERVAL 1 DAY;

-- The sandbox payout provider can void a key: a row with voided_at and no
-- transaction under the key, so a later payout with it finds the row and pays
-- nothing.
ALTER TABLE sandbox_payouts
  MODIFY txn VARCHAR(64) NULL,
  ADD COLUMN IF NOT EXISTS voided_at DATETIME(3) NULL;
