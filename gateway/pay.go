package gateway

import "github.com/flashgate/flashgate/internal/apierr"

// Recharge and withdrawals: being built (issue 3).

func (s *Server) listPayProducts(rc *reqCtx) *apierr.Error     { return apierr.NotFound }
func (s *Server) createPayOrder(rc *reqCtx) *apierr.Error      { return apierr.NotFound }
func (s *Server) getPayOrder(rc *reqCtx) *apierr.Error         { return apierr.NotFound }
func (s *Server) payNotify(rc *reqCtx) *apierr.Error           { return apierr.NotFound }
func (s *Server) devCompletePayOrder(rc *reqCtx) *apierr.Error { return apierr.NotFound }
func (s *Server) createWithdrawal(rc *reqCtx) *apierr.Error    { return apierr.NotFound }
func (s *Server) getWithdrawal(rc *reqCtx) *apierr.Error       { return apierr.NotFound }
