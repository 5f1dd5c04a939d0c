"""A real HTTP receiver on loopback for the webhooks kdpipe and MLflow send, and the signature check a receiver
makes, written out here from MLflow's documented scheme (not imported from either side)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers import free_port


@dataclass
class Receiver:
    """Every POST that reached the receiver: headers and raw body."""

    url: str = ""
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


def signed_with(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """``X-MLflow-Signature`` is ``v1,`` + base64 HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>`` (header
    names are case-insensitive, as HTTP has them)."""
    h = {k.lower(): v for k, v in headers.items()}
    signed = f"{h['x-mlflow-delivery-id']}.{h['x-mlflow-timestamp']}.{body.decode()}"
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(h["x-mlflow-signature"], "v1," + base64.b64encode(digest).decode())


@contextmanager
def receiving(path: str = "/hooks") -> Iterator[Receiver]:
    """A receiver answering 200 to every POST at ``http://127.0.0.1:<free port><path>``, for the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.calls.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
