-- Idempotency keys and provider keys compare byte for byte, as they do in
-- Redis (issue 10). The tables' utf8mb4_unicode_ci collation made "Key-A"
-- and "key-a" one key in MySQL: a client's second request under another key
-- got the first request's answer (pay orders, withdrawals), or a gift under
-- it failed as a duplicate; a provider transaction or payout key differing
-- only in case was taken for another's. Going from a case-insensitive to a
-- binary collation only splits keys apart, so no unique key can break; every
-- statement can run twice.
ALTER TABLE pay_orders
  MODIFY idem_key     VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  MODIFY provider_txn VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

ALTER TABLE withdrawals
  MODIFY idem_key   VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  MODIFY payout_key VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

ALTER TABLE tickets
  MODIFY idem_key VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

ALTER TABLE sandbox_payouts
  MODIFY idempotency_key VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
