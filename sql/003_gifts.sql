-- Live-room gifts: the catalog, one record per committed gift, and each
-- room's running total per sender (the leaderboard). The outcome of every
-- gift ticket goes to the tickets table of 001 (kind 'gift', ref_id = room).

-- The catalog the gateway serves from memory. Gifts are never deleted, only
-- made inactive, so old gift records keep pointing at a row.
CREATE TABLE IF NOT EXISTS gifts (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name       VARCHAR(100)    NOT NULL,
  price      BIGINT          NOT NULL, -- coins for one
  effect_url VARCHAR(500)    NOT NULL DEFAULT '',
  active     TINYINT(1)      NOT NULL DEFAULT 1,
  updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  CONSTRAINT chk_gifts_price CHECK (price > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Fixed ids, so running this again (or after an operator edited a row)
-- changes nothing.
INSERT IGNORE INTO gifts (id, name, price, effect_url) VALUES
  (1, 'Rose', 1, 'https://static.flashgate.example/effects/rose.svga'),
  (2, 'Heart', 10, 'https://static.flashgate.example/effects/heart.svga'),
  (3, 'Rocket', 100, 'https://static.flashgate.example/effects/rocket.svga'),
  (4, 'Castle', 1000, 'https://static.flashgate.example/effects/castle.svga');

-- One row per committed gift. The unique ticket is the last guard against a
-- redelivered gift being written twice (the ledger's (kind, ref) is another).
CREATE TABLE IF NOT EXISTS gift_records (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ticket      VARCHAR(64)     NOT NULL,
  room_id     BIGINT UNSIGNED NOT NULL,
  sender_id   BIGINT UNSIGNED NOT NULL,
  receiver_id BIGINT UNSIGNED NOT NULL,
  gift_id     BIGINT UNSIGNED NOT NULL,
  count       INT             NOT NULL,
  coins       BIGINT          NOT NULL, -- price at sending time * count
  created_at  DATETIME(3)     NOT NULL, -- when the gateway held the coins
  committed_at DATETIME(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_gift_records_ticket (ticket),
  KEY idx_gift_records_room (room_id, id),
  KEY idx_gift_records_sender (sender_id, id),
  KEY idx_gift_records_receiver (receiver_id, id),
  CONSTRAINT chk_gift_records_amounts CHECK (count > 0 AND coins > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Coins each user has given in each room, updated in the transaction that
-- writes the gift record, so a gift counts exactly once however often it is
-- delivered. The descending index serves "top 20 of a room" without a sort.
CREATE TABLE IF NOT EXISTS room_senders (
  room_id    BIGINT UNSIGNED NOT NULL,
  user_id    BIGINT UNSIGNED NOT NULL,
  coins      BIGINT          NOT NULL DEFAULT 0,
  updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (room_id, user_id),
  KEY idx_room_senders_top (room_id, coins DESC, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
