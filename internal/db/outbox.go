package db

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"
)

// The outbox relay's statements. The gateway inserts an outbox row in the
// transaction of the change it announces; the worker's relay claims unsent
// rows (ClaimOutbox), produces them to Kafka with no transaction open, and
// then marks them sent (MarkOutboxSent). States of a row:
//
//	unsent  --ClaimOutbox-->  claimed (claim_token, claimed_until)
//	claimed --MarkOutboxSent-->  sent (sent_at)
//	claimed --ReleaseOutboxClaim, or claimed_until passes-->  unsent
//	sent    --PruneOutbox, once old-->  (deleted)
//
// A row is sent at least once: a relay that dies after its produce and
// before its mark leaves the row to be claimed and sent again.

// outboxPruneBatch is the most rows PruneOutbox deletes at once, so that a
// large backlog is deleted in short statements rather than one long one.
const outboxPruneBatch = 1000

// OutboxMessage is an outbox row to produce.
type OutboxMessage struct {
	ID      int64  `db:"id"`
	Topic   string `db:"topic"`
	Key     string `db:"msg_key"`
	Payload []byte `db:"payload"`
}

// QueueMessage inserts an unsent outbox row in tx, the transaction of the
// change the message announces.
func QueueMessage(ctx context.Context, tx *sqlx.Tx, topic, key string, payload []byte) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO outbox (topic, msg_key, payload) VALUES (?, ?, ?)", topic, key, payload)
	return err
}

// ClaimOutbox claims, under token and for the duration claim, up to limit
// unsent rows that no live claim holds, and returns the rows token holds,
// oldest first. It commits before it returns, so that no lock is held while
// the caller produces and a gateway inserting a row never waits for Kafka;
// READ COMMITTED takes no gap locks, so such an insert waits for nothing
// but the claim statement itself. A claim that lapses (its relay died)
// lets another relay take the rows.
func (s MySQL) ClaimOutbox(ctx context.Context, token string, claim time.Duration, limit int) ([]OutboxMessage, error) {
	var rows []OutboxMessage
	err := InTx(ctx, s.DB, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sqlx.Tx) error {
		rows = rows[:0]
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET claim_token = ?, claimed_until = NOW(3) + INTERVAL ? SECOND
			WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < NOW(3)) ORDER BY id LIMIT ?`,
			token, int(claim/time.Second), limit); err != nil {
			return err
		}
		return tx.SelectContext(ctx, &rows, "SELECT id, topic, msg_key, payload FROM outbox WHERE claim_token = ? AND sent_at IS NULL ORDER BY id", token)
	})
	return rows, err
}

// ReleaseOutboxClaim gives back the unsent rows of a claim whose produce
// failed, so that the next round takes them at once rather than once the
// claim lapses.
func (s MySQL) ReleaseOutboxClaim(ctx context.Context, token string) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE outbox SET claimed_until = NULL WHERE claim_token = ? AND sent_at IS NULL", token)
	return err
}

// MarkOutboxSent records that Kafka acknowledged the rows, so that no relay
// sends them again. Rows marked before stay as they were.
func (s MySQL) MarkOutboxSent(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE outbox SET sent_at = NOW(3), claimed_until = NULL WHERE id IN (?) AND sent_at IS NULL", ids)
	if err != nil {
		return err
	}
	_, err = s.DB.ExecContext(ctx, q, args...)
	return err
}

// PruneOutbox deletes up to outboxPruneBatch rows sent more than keep ago.
// Sent rows are kept that long only so that an operator can inspect them.
func (s MySQL) PruneOutbox(ctx context.Context, keep time.Duration) error {
	_, err := s.DB.ExecContext(ctx, "DELETE FROM outbox WHERE sent_at < NOW(3) - INTERVAL ? SECOND LIMIT ?", int(keep/time.Second), outboxPruneBatch)
	return err
}
