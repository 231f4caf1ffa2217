package db

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// The gift catalog. A gift's price may change; every price a gateway
// served has a gift_prices row, its version, which gift records carry so
// that the worker can check their coins against the price the sender saw.

// CatalogGift is an active gift with the version of its current price
// (0: no gateway served that price yet).
type CatalogGift struct {
	ID        int64  `db:"id"`
	Name      string `db:"name"`
	Price     int64  `db:"price"`
	EffectURL string `db:"effect_url"`
	Version   int64  `db:"version"`
}

// GiftCatalog returns the active gifts, cheapest first.
func (s MySQL) GiftCatalog(ctx context.Context) ([]CatalogGift, error) {
	var gifts []CatalogGift
	// The CHECK on price makes "price > 0" redundant, unless someone dropped
	// it; a free gift would let anyone flood a room without coins.
	const q = `SELECT g.id, g.name, g.price, g.effect_url, COALESCE(p.id, 0) AS version
		FROM gifts g LEFT JOIN gift_prices p ON p.gift_id = g.id AND p.price = g.price
		WHERE g.active = 1 AND g.price > 0 ORDER BY g.price, g.id`
	err := s.DB.SelectContext(ctx, &gifts, q)
	return gifts, err
}

// AddGiftPrice gives a gift's price its version, unless it has one.
func (s MySQL) AddGiftPrice(ctx context.Context, giftID, price int64) error {
	_, err := s.DB.ExecContext(ctx, "INSERT IGNORE INTO gift_prices (gift_id, price) VALUES (?, ?)", giftID, price)
	return err
}

// GiftPrice is a version of a gift's price: a gift_prices row.
type GiftPrice struct {
	ID     int64 `db:"id"`
	GiftID int64 `db:"gift_id"`
	Price  int64 `db:"price"`
}

// GiftPrices returns the price versions with the ids; unknown ids are
// missing.
func (s MySQL) GiftPrices(ctx context.Context, ids []int64) ([]GiftPrice, error) {
	q, args, err := sqlx.In("SELECT id, gift_id, price FROM gift_prices WHERE id IN (?)", ids)
	if err != nil {
		return nil, err
	}
	var rows []GiftPrice
	err = s.DB.SelectContext(ctx, &rows, q, args...)
	return rows, err
}

// CurrentGiftPrices returns the current price of each gift, by gift id;
// unknown gifts are missing.
func (s MySQL) CurrentGiftPrices(ctx context.Context, giftIDs []int64) (map[int64]int64, error) {
	q, args, err := sqlx.In("SELECT id, price FROM gifts WHERE id IN (?)", giftIDs)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID    int64 `db:"id"`
		Price int64 `db:"price"`
	}
	if err := s.DB.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, err
	}
	prices := make(map[int64]int64, len(rows))
	for _, r := range rows {
		prices[r.ID] = r.Price
	}
	return prices, nil
}
