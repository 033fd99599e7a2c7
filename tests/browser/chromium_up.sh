#!/usr/bin/env bash
# Install Debian's Chromium for the run-report test (tests/test_runreport.py) if it is
# missing. Idempotent (a no-op once installed). Needs root (apt). Prints the binary's path.
#
# usage: tests/browser/chromium_up.sh
set -euo pipefail

log() { echo "chromium_up: $*" >&2; }

found() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

binary=$(found)
if [ -z "$binary" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "chromium is not installed and installing it needs root"
    exit 77
  fi
  log "installing chromium (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
  binary=$(found)
fi
[ -n "$binary" ] || { log "chromium did not install"; exit 1; }
echo "$binary"
