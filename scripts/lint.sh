#!/usr/bin/env bash
# `make lint`: the habits CI checks before the tests (make test runs it).
#   - gofmt leaves every file as it is;
#   - go vet finds nothing;
#   - staticcheck finds nothing: its version is pinned by the tool directive
#     in go.mod, so CI and every developer run the same one (go tool
#     staticcheck);
#   - go mod tidy would change neither go.mod nor go.sum.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n $unformatted ]]; then
	echo "lint: gofmt would change these files (run gofmt -w):" >&2
	echo "$unformatted" >&2
	status=1
fi
echo "lint: go vet ./..."
go vet ./... || status=1
echo "lint: go tool staticcheck ./..."
go tool staticcheck ./... || status=1
echo "lint: go mod tidy -diff"
go mod tidy -diff || { echo "lint: go.mod or go.sum is not tidy (run go mod tidy)" >&2; status=1; }
if ((status == 0)); then
	echo "lint: ok"
fi
exit "$status"
