package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The layout tests keep two walls of issue 13 standing: Redis is reached
// only through internal/store, and SQL is written only in internal/db (and
// the packages that keep their own: internal/wallet, internal/sandbox).

// goFiles returns the repository's .go files under dir, as slash paths
// relative to the repository root.
func goFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".run", "bin", "node_modules", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .go files under %s", dir)
	}
	return files
}

// sealedImports are the imports that only the Redis layer may use.
var sealedImports = []string{"github.com/redis/rueidis", "github.com/flashgate/flashgate/lua"}

// mayImportRedis reports whether a file may import sealedImports: the store
// itself, the embedded scripts, the load generator (a separate tool with
// its own client), and the end-to-end tests, which look at and break keys
// behind the store's back.
func mayImportRedis(path string) bool {
	for _, dir := range []string{"internal/store/", "lua/", "loadtest/"} {
		if strings.HasPrefix(path, dir) {
			return true
		}
	}
	return strings.HasPrefix(path, "internal/e2e/") && strings.HasSuffix(path, "_test.go")
}

// TestSealed fails when code outside the Redis layer imports the Redis
// client or the Lua scripts: such code would name keys or run scripts that
// the store does not know of.
func TestSealed(t *testing.T) {
	fset := token.NewFileSet()
	for _, path := range goFiles(t, ".") {
		if mayImportRedis(path) {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, sealed := range sealedImports {
				if p == sealed {
					t.Errorf("%s imports %s: reach Redis through internal/store", fset.Position(imp.Pos()), p)
				}
			}
		}
	}
}

// sqlLiteral matches a string that is, or starts, an SQL statement.
var sqlLiteral = regexp.MustCompile(`(?s)^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE)\s|\bSELECT\b.*\bFROM\b|\bINSERT\b.*\bINTO\b|\bUPDATE\b.*\bSET\b|\bDELETE\b.*\bFROM\b`)

// TestSQLLivesHere fails when a service package (not its tests) holds an
// SQL string: statements belong in internal/db, under names that say what
// they do.
func TestSQLLivesHere(t *testing.T) {
	fset := token.NewFileSet()
	for _, dir := range []string{"gateway", "worker", "ws"} {
		for _, path := range goFiles(t, dir) {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err == nil && sqlLiteral.MatchString(s) {
					t.Errorf("%s: SQL %q: move it into internal/db", fset.Position(lit.Pos()), s)
				}
				return true
			})
		}
	}
}

func TestSQLLiteral(t *testing.T) {
	for s, want := range map[string]bool{
		"SELECT id FROM t WHERE x = ?":        true,
		"SELECT ":                             true,
		"INSERT IGNORE INTO t (a) VALUES (?)": true,
		"UPDATE t SET a = 1":                  true,
		"DELETE FROM t":                       true,
		"\n\t\tSELECT a, b":                   true,
		"cannot select the next batch":        false,
		"no such pay order":                   false,
		"the conditional UPDATE of the order": false,
		"UPDATE":                              false,
	} {
		if got := sqlLiteral.MatchString(s); got != want {
			t.Errorf("sqlLiteral.MatchString(%q) = %v, want %v", s, got, want)
		}
	}
}
