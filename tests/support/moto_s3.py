"""An in-process moto S3 server on 127.0.0.1 (the S3/MinIO stand-in)."""

from __future__ import annotations

import logging
import time

import httpx
from moto.server import ThreadedMotoServer

from devtools.ports import free_port

__all__ = ["MotoS3Server"]


class MotoS3Server:
    """moto's threaded server; its in-memory state survives a stop/start in this process."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        """`host:port` as miniopy-async wants it (no scheme)."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> MotoS3Server:
        """Start the server thread and wait until `GET /moto-api/` answers."""
        # werkzeug logs every request to stderr; only its errors are worth seeing in a test.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.endpoint}/moto-api/", timeout=1.0).status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"moto not answering on {self.endpoint} after {timeout}s")

    def stop(self) -> None:
        """Stop serving and close the listening socket (so clients see a refusal)."""
        if self._server is None:
            return
        self._server.stop()
        # stop() only ends serve_forever(); without server_close() the socket stays bound
        # and new connections hang in its backlog instead of being refused.
        wsgi = self._server._server
        if wsgi is not None:
            wsgi.server_close()
        self._server = None

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
