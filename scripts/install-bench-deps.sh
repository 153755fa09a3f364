#!/usr/bin/env bash
# Install what bench/ingest.py drives besides Python: wrk (load generator) and
# adnanh/webhook (the "webhook" anchor).  Idempotent: does nothing if both are installed.
set -euo pipefail

packages=(wrk webhook)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "bench deps present: ${packages[*]}"
else
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    echo "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The Python side (FastAPI, uvicorn[standard], httpx, rich) comes with the project itself:
#   .venv/bin/pip install -e '.[test]'
command -v wrk webhook
webhook -version
