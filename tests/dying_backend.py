"""A policy backend process that dies mid-response: ``python -m tests.dying_backend PORT BODY_FILE``.

It answers the first GET with the full ``Content-Length`` of BODY_FILE, sends
half of the body, flushes, and kills itself with SIGKILL, as a crashed or
OOM-killed backend does; the client sees a connection cut inside the body.
"""

from __future__ import annotations

import http.server
import os
import signal
import sys
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    port, body_file = int(sys.argv[1]), Path(sys.argv[2])
    _Handler.body = body_file.read_bytes()
    server = http.server.HTTPServer(("127.0.0.1", port), _Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
