package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
)

// This file is the one place that knows MySQL's error codes. Callers ask
// what an error means (a lock conflict, a passing outage, a duplicate), not
// which number it carried.

// MySQL and MariaDB error numbers that flashgate tells apart.
const (
	erDupEntry            = 1062 // unique key violation
	erLockWaitTimeout     = 1205
	erLockDeadlock        = 1213
	erOptionPrevents      = 1290 // --read-only (a switchover) and similar
	erReadOnlyMode        = 1836 // read_only for a non-SUPER user
	erReadOnlyTransaction = 1792
	erConCount            = 1040 // too many connections
	erServerShutdown      = 1053
	erQueryInterrupted    = 1317 // KILL QUERY, max_statement_time
	erConnectionKilled    = 1927 // MariaDB: KILL CONNECTION
	erLockTableFull       = 1206
	erDiskFull            = 1021
	erRecordFileFull      = 1114 // table full
	erUnknownCom          = 1047 // Galera node not ready
)

// IsDuplicate reports whether err is a MySQL unique-key violation.
func IsDuplicate(err error) bool { return mysqlNumber(err) == erDupEntry }

// IsLockConflict reports a deadlock or a lock wait timeout: the transaction
// was rolled back (wholly, for a deadlock) and running it again is safe.
func IsLockConflict(err error) bool {
	n := mysqlNumber(err)
	return n == erLockDeadlock || n == erLockWaitTimeout
}

// IsTransient reports an error that says nothing about the statement or the
// data, only that MySQL cannot do the work right now: lock conflicts, a
// read-only or overloaded server, a full disk, a lost or refused connection,
// a timeout. Writers retry these for as long as it takes; they never turn a
// ticket into a failure or a record into a dead letter.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	switch mysqlNumber(err) {
	case erLockDeadlock, erLockWaitTimeout, erOptionPrevents, erReadOnlyMode, erReadOnlyTransaction,
		erConCount, erServerShutdown, erQueryInterrupted, erConnectionKilled, erLockTableFull,
		erDiskFull, erRecordFileFull, erUnknownCom:
		return true
	case 0:
	default:
		return false
	}
	var ne net.Error
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	}
	return false
}

func mysqlNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// lockRetries is how often InTx runs a transaction again at once after a
// lock conflict before it returns the conflict to its caller.
const lockRetries = 10

// InTx runs f in a transaction and commits it. A transaction that lost a
// deadlock or a lock wait is run again at once, up to lockRetries times: f
// must be safe to repeat (everything it did was rolled back). Any other
// error rolls back and is returned as it is.
func InTx(ctx context.Context, d *sqlx.DB, opts *sql.TxOptions, f func(tx *sqlx.Tx) error) error {
	for n := 1; ; n++ {
		err := runTx(ctx, d, opts, f)
		if err == nil || !IsLockConflict(err) || n >= lockRetries || ctx.Err() != nil {
			return err
		}
		// A short pause lets the winner commit before the loser asks again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(n) * time.Millisecond):
		}
	}
}

func runTx(ctx context.Context, d *sqlx.DB, opts *sql.TxOptions, f func(tx *sqlx.Tx) error) error {
	tx, err := d.BeginTxx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}
