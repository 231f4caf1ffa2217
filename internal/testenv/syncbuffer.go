package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer is an io.Writer a test can read while a service under test
// writes to it, typically a logger's output: bytes.Buffer alone is a data
// race under -race.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
