#!/usr/bin/env bash
# Runs the Go tests (or, with --bench, the benchmarks) against real
# dependencies: `flashgate dev --deps-only` installs and starts MariaDB (plus
# Redis and the embedded Kafka broker) with its data in .run/test, unless a
# MariaDB already answers where the tests look for it. Tests make their own
# databases on it and start their own redis-servers and kfake clusters.
#
#   scripts/test.sh [--bench] [go test flags and packages...]
#
# Without a package argument (./..., ./internal/db, github.com/flashgate/...)
# the run covers ./... . The exit status is go test's.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=test
if [[ ${1:-} == --bench ]]; then
	mode=bench
	shift
fi

go build -o bin/flashgate .
bash scripts/need-deb.sh wrk || echo "test.sh: without wrk, the wrk script test is skipped" >&2
if [[ $mode == test ]]; then
	bash scripts/need-deb.sh chromium || echo "test.sh: without chromium, the web client's browser tests fail" >&2
fi

export FLASHGATE_TEST_MYSQL_SERVER="${FLASHGATE_TEST_MYSQL_SERVER:-root@tcp(127.0.0.1:13306)/}"
if [[ ! $FLASHGATE_TEST_MYSQL_SERVER =~ tcp\(([^:\)]+):([0-9]+)\)/ ]]; then
	echo "test.sh: FLASHGATE_TEST_MYSQL_SERVER=$FLASHGATE_TEST_MYSQL_SERVER: want user@tcp(host:port)/" >&2
	exit 2
fi
mysql_host=${BASH_REMATCH[1]} mysql_port=${BASH_REMATCH[2]}

run_dir=.run/test
deps_pid=
stop_deps() {
	if [[ -n $deps_pid ]] && kill -0 "$deps_pid" 2>/dev/null; then
		kill -TERM "$deps_pid" 2>/dev/null || true
		wait "$deps_pid" 2>/dev/null || true
	fi
}
trap stop_deps EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if (exec 3<>"/dev/tcp/$mysql_host/$mysql_port") 2>/dev/null; then
	echo "test.sh: MariaDB already answers on $mysql_host:$mysql_port; using it"
else
	mkdir -p "$run_dir"
	log=$run_dir/deps.log
	rm -f "$run_dir/deps.ready"
	echo "test.sh: starting test dependencies (bin/flashgate dev --deps-only, log $log)"
	FLASHGATE_RUN_DIR=$run_dir FLASHGATE_MYSQL_DSN="${FLASHGATE_TEST_MYSQL_SERVER%/}/flashgate" \
		bin/flashgate dev --deps-only >"$log" 2>&1 &
	deps_pid=$!
	for ((i = 0; ; i++)); do
		[[ -e $run_dir/deps.ready ]] && break
		if ! kill -0 "$deps_pid" 2>/dev/null; then
			wait "$deps_pid" || true
			echo "test.sh: the test dependencies failed to start; $log:" >&2
			cat "$log" >&2
			exit 1
		fi
		if ((i > 6000)); then # 10 minutes: a first run may apt-get install
			echo "test.sh: the test dependencies were not ready after 10 minutes; $log:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "test.sh: test dependencies are up"
fi

args=("$@")
have_pkg=
for a in "${args[@]}"; do
	if [[ $a == . || $a == ./* || $a == ../* || $a == github.com/flashgate/* ]]; then
		have_pkg=1
	fi
done
[[ -n $have_pkg ]] || args+=(./...)

if [[ $mode == bench ]]; then
	cmd=(go test -run '^$' -bench . -benchmem -count=1 -timeout 30m "${args[@]}")
else
	cmd=(go test -race -count=1 -timeout 15m "${args[@]}")
fi
echo "test.sh: ${cmd[*]}"
status=0
"${cmd[@]}" || status=$?

# A full test run also runs every fuzz target briefly (FUZZ_SMOKE each), so a
# decoder that learned to panic fails the run; `make fuzz` runs them longer.
if [[ $mode == test && $status == 0 && ${#args[@]} == 1 && ${args[0]} == ./... ]]; then
	# Allocation counts mean nothing under -race (sync.Pool drops items on
	# purpose there), so the tests that assert them run again without it.
	mapfile -t alloc_pkgs < <(grep -l 'func Test[A-Za-z]*AllocatesNothing' --include='*_test.go' -r . | xargs -n1 dirname | sort -u)
	if ((${#alloc_pkgs[@]})); then
		echo "test.sh: the allocation tests, without -race, in ${alloc_pkgs[*]}"
		go test -count=1 -run 'AllocatesNothing' "${alloc_pkgs[@]}" || exit 1
	fi
	for target in ${FUZZ_TARGETS:-}; do
		pkg=${target%%:*} name=${target#*:}
		echo "test.sh: fuzz $name in $pkg for ${FUZZ_SMOKE:-10000x}"
		go test -run '^$' -fuzz "^$name\$" -fuzztime "${FUZZ_SMOKE:-10000x}" "$pkg" || { status=$?; break; }
	done
fi
exit "$status"
