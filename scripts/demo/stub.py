"""A local HTTP endpoint for what a laptop does not have (DNS, CDN, load balancer, app admin).

Every request is answered 200 with a small JSON body and logged, one line each, so the effect of
the `http` steps is visible: `tail -f .recovery/demo/http-stub.log`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.postgres import HOST


class StubServer:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                line = f"{time.strftime('%H:%M:%S')} {self.command} {self.path} ({len(body)} bytes)\n"
                with lock, log_path.open("a") as fh:
                    fh.write(line)
                payload = json.dumps({"ok": True, "method": self.command, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:  # our own log line instead
                return

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-stub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
