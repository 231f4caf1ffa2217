# flashgate. `make` lists the targets; settings are FLASHGATE_* environment
# variables, which every target passes through (see `bin/flashgate dev --help`).

.DEFAULT_GOAL := help
GO ?= go
BIN := bin/flashgate
# Extra arguments: `go test` flags for test and bench-go, e.g. ARGS='-run TestX ./internal/...'
ARGS ?=
# Fuzz targets as package:FuzzName: every decoder of client input and the
# router. make test runs each for FUZZ_SMOKE; make fuzz for FUZZTIME.
FUZZ_TARGETS ?= ./gateway:FuzzRouter ./gateway:FuzzDecode ./gateway:FuzzRequest \
	./internal/auth:FuzzVerify ./internal/store:FuzzParseTicket ./internal/bus:FuzzGiftRecord \
	./ws:FuzzParseFrame
# Budgets are execution counts, not durations: Go 1.26's fuzz coordinator can
# fail a clean run with "context deadline exceeded" when a duration runs out
# (golang/go#75804, fixed in Go 1.27).
FUZZ_SMOKE ?= 10000x
export FUZZ_TARGETS FUZZ_SMOKE
FUZZTIME ?= 500000x

.PHONY: help build run test test-faults bench bench-go fuzz clean clean-data

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/flashgate
	$(GO) build -o $(BIN) .

run: build ## set up and run everything locally: Redis, MariaDB, Kafka (embedded), gateway, worker, ws
	FLASHGATE_DEV=1 $(BIN) dev

test: ## start the test dependencies, then go test -race ./... (ARGS=...)
	bash scripts/test.sh $(ARGS)

test-faults: ## only the fault suite (also part of make test): each test prints a "faults:" line of figures
	bash -c "set -o pipefail; bash scripts/test.sh -run 'TestFault' -v ./internal/e2e/ | grep -E '^(--- |ok|FAIL)|faults:'"

bench: ## the throughput table: flashgate vs bare fasthttp with wrk, writers, ws fan-out (ARGS='--rows order')
	bash scripts/bench.sh $(ARGS)

bench-go: ## the Go benchmarks (go test -bench) against the test dependencies (ARGS=...)
	bash scripts/test.sh --bench $(ARGS)

fuzz: ## run each of FUZZ_TARGETS for FUZZTIME
	@$(if $(strip $(FUZZ_TARGETS)),,echo "no fuzz targets yet: list them in FUZZ_TARGETS")
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*}"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

clean: ## remove bin/ (keeps the data in .run/)
	rm -rf bin

clean-data: clean ## also remove .run/ (Redis, MariaDB and Kafka data); stop `make run` first
	rm -rf .run
