#!/usr/bin/env bash
# Installs wrk, Debian's HTTP load generator, when it is missing: make bench
# drives the servers with it, and make test checks the wrk script with it.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [[ $(id -u) != 0 ]]; then
	echo "need-wrk.sh: wrk is not installed; run as root, or: sudo apt-get install -y wrk" >&2
	exit 1
fi
echo "need-wrk.sh: installing wrk (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
