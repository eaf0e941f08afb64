"""What the monitor tests share: a refused-call event as access records one, and an HTTPS webhook
receiver on 127.0.0.1 that records each POST and answers a status the test sets (certificates
from `sagevault.crypto.create_local_tls`)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from conftest import TENANT
from sagevault.audit import AuditEvent, EventName, Outcome, Reason
from sagevault.crypto import TlsFiles, server_context
from sagevault.identity import Channel

ANSWER = b"RECEIVER-ANSWER-BODY"


def denied(actor: str, at: datetime | None = None) -> AuditEvent:
    """An access:permission:deny of `actor` on the test tenant (a refused reveal)."""
    extra = {"at": at} if at else {}
    return AuditEvent(
        name=EventName.ACCESS_PERMISSION_DENY,
        channel=Channel.API,
        outcome=Outcome.DENIED,
        reason=Reason.ACCESS_DENIED,
        actor=actor,
        tenant_id=TENANT,
        operation="reveal",
        **extra,
    )


class Receiver:
    """An HTTPS server on 127.0.0.1 recording each POST (headers, body, its own clock) and answering `status`."""

    def __init__(self, tls: TlsFiles, port: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((dict(self.headers.items()), body, time.time()))
                self.send_response(receiver.status)
                if 300 <= receiver.status < 400:
                    self.send_header("Location", f"https://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.socket = server_context(tls.cert, tls.key).wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/alarms"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02})
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self._thread.join()
