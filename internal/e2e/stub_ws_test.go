package e2e

import "context"

func (s *system) startWS(ctx context.Context) {}
