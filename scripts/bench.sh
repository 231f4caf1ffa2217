#!/usr/bin/env bash
# `make bench`: the throughput table. Installs wrk (Debian's package) when it
# is missing, builds flashgate, the bare reference server and the bench
# driver, and runs the driver (loadtest/bench), which starts its own stack
# on its own ports with data under .run/bench. Arguments go to the driver:
#
#   scripts/bench.sh [--rows sold_out,order] [--duration 8s]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/need-deb.sh wrk
go build -o bin/flashgate .
go build -o bin/bare ./loadtest/bare
go build -o bin/bench ./loadtest/bench
exec bin/bench "$@"
