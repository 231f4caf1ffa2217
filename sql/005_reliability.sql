-- Accepted means delivered (issue 7).
--
-- orders.redis_released: 0 while a cancelled or expired order's unit is back
-- in MySQL's stock but not yet in Redis's. The worker repeats the Redis
-- release until it sticks, and the stock reconciler subtracts these units
-- so that Redis never counts a unit twice.
ALTER TABLE orders
  ADD COLUMN redis_released TINYINT NOT NULL DEFAULT 1,
  ADD KEY idx_orders_unreleased (redis_released, event_id);

-- A gift's Idempotency-Key and its first answer live in MySQL too, unique per
-- sender, so a retry after Redis lost the key gets the first ticket back and
-- a second copy in flight fails as "duplicate" instead of debiting twice.
ALTER TABLE tickets
  ADD COLUMN idem_key VARCHAR(64) NULL,
  ADD COLUMN balance_after BIGINT NULL,
  ADD UNIQUE KEY uk_tickets_idem (user_id, kind, idem_key);
