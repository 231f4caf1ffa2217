#!/usr/bin/env bash
# Installs a Debian package when its command is missing: wrk, the HTTP load
# generator (make bench drives the servers with it, make test checks the wrk
# script with it), and chromium (the web client's browser tests drive it).
#
#   scripts/need-deb.sh PACKAGE [COMMAND]   (COMMAND defaults to PACKAGE)
set -euo pipefail
pkg=$1 bin=${2:-$1}
command -v "$bin" >/dev/null && exit 0
if [[ $(id -u) != 0 ]]; then
	echo "need-deb.sh: $bin is not installed; run as root, or: sudo apt-get install -y $pkg" >&2
	exit 1
fi
echo "need-deb.sh: installing $pkg (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 ||
	{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$pkg" >/dev/null; }
