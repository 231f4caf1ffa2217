package gateway

import "github.com/flashgate/flashgate/internal/apierr"

// Live-room gifts and wallet: being built (issue 3).

func (s *Server) listGifts(rc *reqCtx) *apierr.Error   { return apierr.NotFound }
func (s *Server) getWallet(rc *reqCtx) *apierr.Error   { return apierr.NotFound }
func (s *Server) sendGift(rc *reqCtx) *apierr.Error    { return apierr.NotFound }
func (s *Server) leaderboard(rc *reqCtx) *apierr.Error { return apierr.NotFound }
