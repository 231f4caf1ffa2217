-- Recharge (buying coins through a payment provider) and anchor withdrawals
-- (paying earnings out), with the transactional outbox that hands accepted
-- withdrawals to the worker, and the sandbox payout provider's own records.

-- What a user can buy: coins for money. Ids are fixed so apps and tests can
-- name them.
CREATE TABLE IF NOT EXISTS pay_products (
  id     BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name   VARCHAR(100)    NOT NULL,
  price  BIGINT          NOT NULL, -- cents
  coins  BIGINT          NOT NULL,
  active TINYINT(1)      NOT NULL DEFAULT 1, -- 0 hides it from the list and refuses new orders
  CONSTRAINT chk_pay_products_positive CHECK (price > 0 AND coins > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO pay_products (id, name, price, coins) VALUES
  (1, '60 coins', 600, 60),
  (2, '300 coins', 3000, 300),
  (3, '980 coins', 9800, 980);

-- One recharge. It turns paid exactly once: the provider's notify runs
-- UPDATE ... WHERE status = 'paying' and credits the wallet in the same
-- transaction, so a replayed notify changes no row and credits nothing.
CREATE TABLE IF NOT EXISTS pay_orders (
  order_id     VARCHAR(64)     NOT NULL PRIMARY KEY, -- "P" + 16 upper-case hex digits
  user_id      BIGINT UNSIGNED NOT NULL,
  product_id   BIGINT UNSIGNED NOT NULL,
  amount       BIGINT          NOT NULL, -- cents the provider must report
  coins        BIGINT          NOT NULL, -- coins credited when paid
  status       VARCHAR(16)     NOT NULL DEFAULT 'paying', -- paying | paid
  idem_key     VARCHAR(64)     NULL,     -- the creating request's Idempotency-Key
  provider_txn VARCHAR(64)     NULL,     -- the provider's transaction, once paid
  created_at   DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  paid_at      DATETIME(3)     NULL,
  UNIQUE KEY uk_pay_orders_txn (provider_txn),
  UNIQUE KEY uk_pay_orders_idem (user_id, idem_key),
  KEY idx_pay_orders_user (user_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One withdrawal of earnings. The earnings are deducted in the transaction
-- that inserts it (ledger ref = id); a failed payout refunds them.
CREATE TABLE IF NOT EXISTS withdrawals (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id    BIGINT UNSIGNED NOT NULL,
  amount     BIGINT          NOT NULL, -- coins of earnings
  status     VARCHAR(16)     NOT NULL DEFAULT 'pending', -- pending | succeeded | failed
  attempts   INT             NOT NULL DEFAULT 0,         -- payout calls made, across worker restarts
  last_error VARCHAR(255)    NULL,
  payout_txn VARCHAR(64)     NULL,     -- the payout provider's transaction, once succeeded
  idem_key   VARCHAR(64)     NULL,     -- the creating request's Idempotency-Key
  created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_withdrawals_idem (user_id, idem_key),
  KEY idx_withdrawals_user (user_id, id),
  CONSTRAINT chk_withdrawals_positive CHECK (amount > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Transactional outbox: messages written in the same transaction as the
-- change they announce, relayed to Kafka by the worker (at least once).
CREATE TABLE IF NOT EXISTS outbox (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  topic      VARCHAR(200)    NOT NULL,
  msg_key    VARCHAR(200)    NOT NULL,
  payload    MEDIUMBLOB      NOT NULL,
  created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  sent_at    DATETIME(3)     NULL,     -- NULL until Kafka acknowledged it
  KEY idx_outbox_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The sandbox payout provider's own ledger: what it paid out, once per
-- idempotency key. It stands in for an external provider's records, so
-- "paid out exactly once" can be checked.
CREATE TABLE IF NOT EXISTS sandbox_payouts (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  idempotency_key VARCHAR(100)    NOT NULL,
  user_id         BIGINT UNSIGNED NOT NULL,
  amount          BIGINT          NOT NULL,
  txn             VARCHAR(64)     NOT NULL,
  created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_sandbox_payouts_key (idempotency_key),
  UNIQUE KEY uk_sandbox_payouts_txn (txn)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
