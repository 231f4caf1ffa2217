# flashgate. `make` lists the targets; settings are FLASHGATE_* environment
# variables, which every target passes through (see `bin/flashgate dev --help`).

.DEFAULT_GOAL := help
GO ?= go
BIN := bin/flashgate
# Extra arguments: `go test` flags for test and bench-go, e.g. ARGS='-run TestX ./internal/...'
ARGS ?=
# Fuzz targets as package:FuzzName: every decoder of client input and the
# router. make test runs each for FUZZ_SMOKE; make fuzz for FUZZTIME.
FUZZ_TARGETS ?= ./gateway:FuzzRouter ./gateway:FuzzDecode ./gateway:FuzzRequest ./gateway:FuzzNotify \
	./internal/auth:FuzzVerify ./internal/store:FuzzParseTicket ./internal/bus:FuzzGiftRecord \
	./ws:FuzzParseFrame
# Budgets are execution counts, not durations: Go 1.26's fuzz coordinator can
# fail a clean run with "context deadline exceeded" when a duration runs out
# (golang/go#75804, fixed in Go 1.27).
FUZZ_SMOKE ?= 10000x
export FUZZ_TARGETS FUZZ_SMOKE
FUZZTIME ?= 500000x

# k6 is not installed by the project (it is AGPL-licensed): bring your own
# v1.x. K6 is the binary: k6 on PATH, else bin/k6 if you put one there.
K6 ?= $(or $(shell command -v k6 2>/dev/null),$(wildcard bin/k6),k6)
SCENARIO ?= flash_sale
SCENARIOS := $(sort $(basename $(notdir $(wildcard loadtest/k6/*.js))))
# Extra `k6 run` arguments for loadtest, e.g. K6_ARGS='--out json=run.json'
K6_ARGS ?=
# k6 resolves a relative open() path against the script's directory; make
# hands the scripts an absolute path instead.
ifneq ($(TOKENS_FILE),)
override TOKENS_FILE := $(abspath $(TOKENS_FILE))
export TOKENS_FILE
endif

.PHONY: help build run lint test test-faults bench bench-go fuzz k6 loadtest image k8s-secrets clean clean-data

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/flashgate
	$(GO) build -o $(BIN) .

run: build ## set up and run everything locally: Redis, MariaDB, Kafka (embedded), gateway, worker, ws
	FLASHGATE_DEV=1 $(BIN) dev

lint: ## gofmt, go vet, staticcheck (pinned in go.mod) and go mod tidy must find nothing; CI runs it before make test
	bash scripts/lint.sh

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

k6: ## check for a k6 v1.x binary (K6=..., else k6 on PATH or bin/k6); the project does not install it
	@if ! command -v "$(K6)" >/dev/null 2>&1; then \
		echo "make k6: no k6 binary ('$(K6)')." >&2; \
		echo "  The project does not install k6 (it is AGPL-licensed); bring your own v1.x:" >&2; \
		echo "  your package manager's k6 package, or Grafana's k6 release for your platform." >&2; \
		echo "  Put it on PATH, copy it to bin/k6, or name it with K6=/path/to/k6." >&2; \
		exit 1; \
	fi
	@v=$$("$(K6)" version 2>/dev/null | head -n 1); \
	case "$$v" in \
		"k6 v"[1-9]*) echo "$$v";; \
		*) echo "make k6: '$(K6) version' says '$$v'; the scenarios need k6 v1.x (k6/websockets)" >&2; exit 1;; \
	esac

loadtest: ## run a k6 scenario against a running `make run`: SCENARIO=flash_sale or live_room (K6_ARGS=...)
	@case "$(SCENARIO)" in \
		*[!a-z0-9_]*|"") ok=no;; \
		*) if [ -f "loadtest/k6/$(SCENARIO).js" ]; then ok=yes; else ok=no; fi;; \
	esac; \
	if [ "$$ok" != yes ]; then \
		echo "make loadtest: unknown SCENARIO '$(SCENARIO)'; one of: $(SCENARIOS)" >&2; exit 2; \
	fi
	@$(MAKE) --no-print-directory k6
	$(K6) run $(K6_ARGS) loadtest/k6/$(SCENARIO).js

# The image make image builds and k8s/ deploys (k8s/base/kustomization.yaml
# names the same one; an overlay's `images:` points it at your registry).
IMAGE ?= flashgate/flashgate:0.11.0
DOCKER ?= docker

image: ## build the container image IMAGE with Docker (needs a Docker engine, not only the client)
	@if ! command -v "$(DOCKER)" >/dev/null 2>&1; then \
		echo "make image: no '$(DOCKER)' command; install Docker (or set DOCKER=podman)" >&2; exit 1; \
	fi
	@if ! "$(DOCKER)" version --format '{{.Server.Version}}' >/dev/null 2>&1; then \
		echo "make image: '$(DOCKER)' is here but no Docker engine answers it (DOCKER_HOST=$${DOCKER_HOST:-the default socket})." >&2; \
		echo "  Start the engine, or point DOCKER_HOST at one. make test still checks what it can without one:" >&2; \
		echo "  the static build and the binary running as a non-root user in an empty directory (k8s: TestImage*)." >&2; \
		exit 1; \
	fi
	$(DOCKER) build -t $(IMAGE) .

k8s-secrets: ## write k8s/overlays/dev/secrets.env with fresh random secrets (kept out of git)
	@f=k8s/overlays/dev/secrets.env; \
	if [ -e $$f ]; then echo "$$f exists; remove it to make new secrets"; exit 0; fi; \
	umask 077; pw=$$(head -c 24 /dev/urandom | base64 | tr -d '/+='); { \
		echo "FLASHGATE_TOKEN_SECRET=$$(head -c 48 /dev/urandom | base64 | tr -d '\n')"; \
		echo "FLASHGATE_PAY_SECRET=$$(head -c 48 /dev/urandom | base64 | tr -d '\n')"; \
		echo "MARIADB_ROOT_PASSWORD=$$pw"; \
		echo "FLASHGATE_MYSQL_DSN=root:$$pw@tcp(mariadb:3306)/flashgate"; \
	} >$$f; echo "wrote $$f"

clean: ## remove bin/ (keeps the data in .run/)
	rm -rf bin

clean-data: clean ## also remove .run/ (Redis, MariaDB and Kafka data); stop `make run` first
	rm -rf .run
