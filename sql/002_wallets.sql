-- Wallets and their ledger: the source of truth for coins. Redis holds a hot
-- copy of each balance (loaded on first use) minus the coins held by gifts in
-- flight.

CREATE TABLE IF NOT EXISTS wallets (
  user_id         BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  balance         BIGINT          NOT NULL DEFAULT 0, -- coins to spend
  earnings        BIGINT          NOT NULL DEFAULT 0, -- coins earned from gifts received, withdrawable
  total_recharged BIGINT          NOT NULL DEFAULT 0,
  total_spent     BIGINT          NOT NULL DEFAULT 0,
  total_earned    BIGINT          NOT NULL DEFAULT 0,
  total_withdrawn BIGINT          NOT NULL DEFAULT 0,
  updated_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  CONSTRAINT chk_wallets_nonnegative CHECK (balance >= 0 AND earnings >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per change of one wallet account. (kind, ref) is unique, so a
-- change replayed under the same reference is refused by MySQL itself.
CREATE TABLE IF NOT EXISTS ledger (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id       BIGINT UNSIGNED NOT NULL,
  account       VARCHAR(16)     NOT NULL, -- balance | earnings
  kind          VARCHAR(24)     NOT NULL, -- gift_sent, gift_received, recharge, withdrawal, withdrawal_refund
  ref           VARCHAR(64)     NOT NULL, -- gift ticket, pay order id, withdrawal id
  amount        BIGINT          NOT NULL, -- signed change
  balance_after BIGINT          NOT NULL, -- the account after the change
  created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_ledger_ref (kind, ref),
  KEY idx_ledger_user (user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
