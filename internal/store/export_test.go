package store

import "github.com/redis/rueidis"

// Raw is the client, for the store_test tests that look at keys directly.
func (s *Redis) Raw() rueidis.Client { return s.c }
