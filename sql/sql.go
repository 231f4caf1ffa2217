// Package sql holds flashgate's numbered MySQL migrations, embedded into the
// binary and applied in order by `flashgate migrate`.
package sql

import "embed"

// Migrations are the NNN_name.sql files of this directory.
//
//go:embed *.sql
var Migrations embed.FS
