-- Every price each gift has had, so that the worker can check a gift record's
-- coins instead of trusting them (issue 10): a record names the catalog
-- version it was priced at (gift_prices.id), and the worker fails one whose
-- coins are not that version's price times the count. Rows are never
-- changed or deleted. The gateway adds a row when it first serves a new
-- price, before any gift can be held at it.
CREATE TABLE IF NOT EXISTS gift_prices (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  gift_id    BIGINT UNSIGNED NOT NULL,
  price      BIGINT          NOT NULL,
  first_seen DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_gift_prices (gift_id, price)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO gift_prices (gift_id, price) SELECT id, price FROM gifts;
