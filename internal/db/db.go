// Package db opens MySQL (MariaDB), applies the embedded migrations and holds
// the queries that more than one service runs. MySQL is the source of truth;
// nothing on the gateway's order path calls it.
package db

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	migrations "github.com/flashgate/flashgate/sql"
)

// Errors.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalidState = errors.New("invalid state")
)

// ParseDSN normalises a DSN: UTC times, parseTime, a session time zone of UTC
// so NOW() agrees with Go, and interpolated parameters for large batches.
func ParseDSN(dsn string) (*mysql.Config, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("bad MySQL DSN: %w", err)
	}
	c.ParseTime = true
	c.Loc = time.UTC
	c.InterpolateParams = true
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params["time_zone"] = "'+00:00'"
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	return c, nil
}

// Open connects to the database named in dsn and checks it answers.
func Open(ctx context.Context, dsn string) (*sqlx.DB, error) {
	c, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	d, err := sqlx.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("cannot open MySQL: %w", err)
	}
	d.SetMaxOpenConns(32)
	d.SetMaxIdleConns(32)
	d.SetConnMaxLifetime(30 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.PingContext(pctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("cannot reach MySQL at %s: %w", c.Addr, err)
	}
	return d, nil
}

// CreateDatabase creates the database named in dsn if it does not exist.
func CreateDatabase(ctx context.Context, dsn string) error {
	c, err := ParseDSN(dsn)
	if err != nil {
		return err
	}
	name := c.DBName
	if name == "" {
		return errors.New("the MySQL DSN names no database")
	}
	if strings.ContainsAny(name, "`'\"\\ ") {
		return fmt.Errorf("bad database name %q", name)
	}
	c.DBName = ""
	d, err := Open(ctx, c.FormatDSN())
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
	if err != nil {
		return fmt.Errorf("cannot create database %s: %w", name, err)
	}
	return nil
}

// Migrate applies the embedded migrations that have not been applied yet.
// It is idempotent and safe to run from several processes at once.
func Migrate(ctx context.Context, d *sqlx.DB) (applied []string, err error) {
	conn, err := d.Connx(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var got int
	if err := conn.GetContext(ctx, &got, "SELECT GET_LOCK('flashgate_migrate', 60)"); err != nil || got != 1 {
		return nil, fmt.Errorf("cannot take the migration lock: %v", err)
	}
	defer conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK('flashgate_migrate')")

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT NOT NULL PRIMARY KEY,
		name VARCHAR(200) NOT NULL,
		applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))`); err != nil {
		return nil, fmt.Errorf("cannot create schema_migrations: %w", err)
	}
	var done []int
	if err := conn.SelectContext(ctx, &done, "SELECT version FROM schema_migrations"); err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for _, v := range done {
		have[v] = true
	}
	names, err := fs.Glob(migrations.Migrations, "*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", name)
		}
		if have[v] {
			continue
		}
		body, _ := fs.ReadFile(migrations.Migrations, name)
		for _, stmt := range splitStatements(string(body)) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %s: %w", name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", v, name); err != nil {
			return applied, err
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// splitStatements splits a migration on semicolons at line ends and drops
// comment-only chunks. Migrations keep one statement per such semicolon.
func splitStatements(s string) []string {
	var out []string
	for _, chunk := range strings.Split(s, ";\n") {
		var lines []string
		for _, l := range strings.Split(chunk, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
				lines = append(lines, l)
			}
		}
		if stmt := strings.TrimSuffix(strings.TrimSpace(strings.Join(lines, "\n")), ";"); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}
