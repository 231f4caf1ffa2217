package gateway

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flashgate/flashgate/internal/apierr"
)

// recentGifts is how many of a room's last committed gifts GET
// /rooms/{room_id}/gifts lists: what a viewer who joins sees before the
// pushes take over.
const recentGifts = 50

// recentGift is one gift of a room's feed: the fields of the WebSocket
// "gift" push, plus the coins and when it was committed.
type recentGift struct {
	Ticket      string    `db:"ticket" json:"ticket"`
	SenderID    int64     `db:"sender_id" json:"sender_id"`
	ReceiverID  int64     `db:"receiver_id" json:"receiver_id"`
	GiftID      int64     `db:"gift_id" json:"gift_id"`
	Count       int64     `db:"count" json:"count"`
	Coins       int64     `db:"coins" json:"coins"`
	CommittedAt time.Time `db:"committed_at" json:"-"`
	At          string    `db:"-" json:"committed_at"`
}

// roomGifts answers GET /api/v1/rooms/{room_id}/gifts: the room's last
// committed gifts, newest first, from a cache refreshed at most once a
// boardTTL per room (as the leaderboard), so a crowd joining at once costs
// MySQL one query.
func (s *Server) roomGifts(rc *reqCtx) *apierr.Error {
	return s.writeRoomBody(rc, &s.gifts.recent, s.queryRecentGifts)
}

func (s *Server) queryRecentGifts(ctx context.Context, roomID int64) ([]byte, error) {
	gifts := make([]recentGift, 0, recentGifts)
	err := s.mysql.DB.SelectContext(ctx, &gifts,
		"SELECT ticket, sender_id, receiver_id, gift_id, count, coins, committed_at FROM gift_records WHERE room_id = ? ORDER BY id DESC LIMIT ?",
		roomID, recentGifts)
	if err != nil {
		return nil, err
	}
	for i := range gifts {
		gifts[i].At = ts(gifts[i].CommittedAt)
	}
	return json.Marshal(struct {
		RoomID int64        `json:"room_id"`
		Gifts  []recentGift `json:"gifts"`
	}{roomID, gifts})
}
