#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the web client's tests
# (internal/e2e/browser_test.go) drive it headless, and fail naming the
# package without it.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [[ $(id -u) != 0 ]]; then
	echo "need-chromium.sh: chromium is not installed; run as root, or: sudo apt-get install -y chromium" >&2
	exit 1
fi
echo "need-chromium.sh: installing chromium (apt-get, first run only)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
	{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
