package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestErrorKinds: what the writers wait out and what they treat as the
// record's fault. A misfiled error either fails tickets during an outage
// (transient taken for poison) or retries a bad record forever.
func TestErrorKinds(t *testing.T) {
	my := func(n uint16) error { return fmt.Errorf("cannot write: %w", &mysql.MySQLError{Number: n}) }
	tests := []struct {
		name                 string
		err                  error
		transient, lock, dup bool
	}{
		{"deadlock", my(1213), true, true, false},
		{"lock wait timeout", my(1205), true, true, false},
		{"read-only server", my(1290), true, false, false},
		{"read_only for the user", my(1836), true, false, false},
		{"too many connections", my(1040), true, false, false},
		{"connection killed", my(1927), true, false, false},
		{"duplicate key", my(1062), false, false, true},
		{"check constraint", my(4025), false, false, false},
		{"bad datetime", my(1292), false, false, false},
		{"trigger refused", my(1644), false, false, false},
		{"bad connection", driver.ErrBadConn, true, false, false},
		{"invalid connection", mysql.ErrInvalidConn, true, false, false},
		{"server went away", io.ErrUnexpectedEOF, true, false, false},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, false, false},
		{"statement timeout", fmt.Errorf("query: %w", context.DeadlineExceeded), true, false, false},
		{"a bug", errors.New("stock guard refused 3 units"), false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsTransient(tc.err); got != tc.transient {
				t.Errorf("IsTransient = %v, want %v", got, tc.transient)
			}
			if got := IsLockConflict(tc.err); got != tc.lock {
				t.Errorf("IsLockConflict = %v, want %v", got, tc.lock)
			}
			if got := IsDuplicate(tc.err); got != tc.dup {
				t.Errorf("IsDuplicate = %v, want %v", got, tc.dup)
			}
		})
	}
	if IsTransient(nil) {
		t.Error("nil is transient")
	}
}
