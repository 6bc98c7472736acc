"""A TCP relay on loopback that can drop a connection in the middle of a response, as a flaky
network between a worker and its object store does."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CuttingProxy:
    """Relays 127.0.0.1:<port> to ``upstream_port``. While ``cuts_left`` > 0, a connection whose
    responses pass ``cut_after`` bytes is reset right there (RST, no orderly close)."""

    def __init__(self, upstream_port: int, *, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts_left = 0
        self.cuts_made = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._relay, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, True), daemon=True).start()

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cuts_made += 1
            return True

    def _relay(self, source: socket.socket, sink: socket.socket, responses: bool) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if responses and sent + len(data) > self.cut_after and self._take_cut():
                    sink.sendall(data[: max(0, self.cut_after - sent)])
                    # drop both ends now: the client sees the body stop mid-way (a close alone would
                    # wait for the other relay thread's recv on the same socket to return)
                    for end in (sink, source):
                        with contextlib.suppress(OSError):
                            end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            end.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for end in (sink, source):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
