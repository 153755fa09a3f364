"""Run ``nethook serve --no-workers`` and one ``nethook worker`` as one benchmark target.

The split deployment of part 6/7 on one machine: ingest and dispatch in two processes,
so each gets a core. Stops both on SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def main() -> int:
    binary, config = sys.argv[1], sys.argv[2]
    worker = subprocess.Popen([binary, "worker", "--config", config])
    server = subprocess.Popen([binary, "serve", "--config", config, "--no-workers"])

    stopping = []

    def stop(*_: object) -> None:
        stopping.append(True)
        for proc in (server, worker):
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = server.wait()
    asked = bool(stopping)
    stop()
    worker.wait(15)
    # uvicorn re-raises the SIGTERM it handled: that is a clean stop we asked for.
    return 0 if asked and code in (0, -signal.SIGTERM) else code


if __name__ == "__main__":
    sys.exit(main() if len(sys.argv) == 3 and Path(sys.argv[2]).exists() else 2)
