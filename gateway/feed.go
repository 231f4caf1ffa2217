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
	Ticket      string    `json:"ticket"`
	SenderID    int64     `json:"sender_id"`
	ReceiverID  int64     `json:"receiver_id"`
	GiftID      int64     `json:"gift_id"`
	Count       int64     `json:"count"`
	Coins       int64     `json:"coins"`
	CommittedAt time.Time `json:"-"`
	At          string    `json:"committed_at"`
}

// roomGifts answers GET /api/v1/rooms/{room_id}/gifts: the room's last
// committed gifts, newest first, from a cache refreshed at most once a
// boardTTL per room (as the leaderboard), so a crowd joining at once costs
// MySQL one query.
func (s *Server) roomGifts(rc *reqCtx) *apierr.Error {
	return s.writeRoomBody(rc, &s.gifts.recent, s.queryRecentGifts)
}

func (s *Server) queryRecentGifts(ctx context.Context, roomID int64) ([]byte, error) {
	rows, err := s.mysql.RecentRoomGifts(ctx, roomID, recentGifts)
	if err != nil {
		return nil, err
	}
	gifts := make([]recentGift, len(rows))
	for i, g := range rows {
		gifts[i] = recentGift{Ticket: g.Ticket, SenderID: g.SenderID, ReceiverID: g.ReceiverID, GiftID: g.GiftID,
			Count: g.Count, Coins: g.Coins, CommittedAt: g.CommittedAt, At: ts(g.CommittedAt)}
	}
	return json.Marshal(struct {
		RoomID int64        `json:"room_id"`
		Gifts  []recentGift `json:"gifts"`
	}{roomID, gifts})
}
