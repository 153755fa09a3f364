#!/usr/bin/env bash
# Debian packages the tests and benchmarks use (idempotent; needs root or sudo).
#   webhook: adnanh/webhook, the benchmark anchor      wrk: the load generator
#   chromium: the browser the dashboard tests drive through Playwright
set -euo pipefail
need=()
for pkg in webhook wrk prometheus-alertmanager tcl chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
