-- Flash sale: events, their orders, and the final outcome of every ticket.

CREATE TABLE IF NOT EXISTS events (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name        VARCHAR(200)    NOT NULL,
  price       BIGINT          NOT NULL,
  stock_total INT             NOT NULL,
  -- units not yet sold in MySQL; the worker's guarded UPDATE keeps it >= 0
  stock       INT             NOT NULL,
  starts_at   DATETIME(3)     NOT NULL,
  ends_at     DATETIME(3)     NOT NULL,
  created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY idx_events_window (ends_at, starts_at),
  CONSTRAINT chk_events_stock CHECK (stock >= 0 AND stock <= stock_total)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS orders (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_no   VARCHAR(32)     NOT NULL,
  ticket     VARCHAR(64)     NOT NULL,
  event_id   BIGINT UNSIGNED NOT NULL,
  user_id    BIGINT UNSIGNED NOT NULL,
  price      BIGINT          NOT NULL,
  status     VARCHAR(16)     NOT NULL, -- unpaid, paid, cancelled, expired
  -- 1 while the order holds a unit (unpaid or paid), NULL once it gave it back:
  -- the unique key below then allows one live order per (event, user) and any
  -- number of cancelled or expired ones.
  active     TINYINT         NULL,
  created_at DATETIME(3)     NOT NULL,
  expires_at DATETIME(3)     NOT NULL,
  paid_at    DATETIME(3)     NULL,
  pay_txn    VARCHAR(64)     NULL,
  UNIQUE KEY uk_orders_order_no (order_no),
  UNIQUE KEY uk_orders_ticket (ticket),
  UNIQUE KEY uk_orders_buyer (event_id, user_id, active),
  KEY idx_orders_user (user_id, id),
  KEY idx_orders_expiry (status, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per decided ticket. Its primary key is what makes a ticket's outcome
-- final: the worker and the reconciler both insert here, and the first wins.
CREATE TABLE IF NOT EXISTS tickets (
  ticket     VARCHAR(64)     NOT NULL PRIMARY KEY,
  kind       VARCHAR(8)      NOT NULL, -- order
  user_id    BIGINT UNSIGNED NOT NULL,
  ref_id     BIGINT UNSIGNED NOT NULL, -- the event id of an order ticket
  status     VARCHAR(16)     NOT NULL, -- succeeded, failed
  reason     VARCHAR(32)     NULL,
  order_no   VARCHAR(32)     NULL,
  created_at DATETIME(3)     NOT NULL,
  decided_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY idx_tickets_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
