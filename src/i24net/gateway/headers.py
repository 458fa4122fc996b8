"""Bounding a request's head (request line and headers) before it is buffered.

uvicorn's header limits (``h11_max_incomplete_event_size``) apply to its
pure-Python h11 parser only. With httptools, which the project installs
because h11 cost about a third of the intake's CPU, nothing bounds a head:
a single 16 MiB header, or 300,000 small ones, is accumulated by the parser
and by uvicorn's header list before the application sees the request, and
an ASGI middleware runs too late to help.

:func:`bounded_httptools` returns a subclass of uvicorn's
``HttpToolsProtocol`` that counts, per request, the bytes fed to the parser
until the head is complete and the headers it reports. Past
``max_header_bytes`` or ``max_headers`` it answers ``431``
``{"error": "headers_too_large", "detail": ...}`` and closes the
connection: at most ``max_header_bytes`` of a head is ever fed to the parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REFUSAL_CODE = "headers_too_large"


class _TooManyHeaders(Exception):
    """Raised inside the parser's callback to stop it (httptools turns it into an
    ``HttpParserCallbackError``, which uvicorn answers through ``send_400_response``)."""


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head bounded (see the module docstring)."""

    max_header_bytes = 32 << 10
    max_headers = 100
    on_refused: Callable[[str], None] = staticmethod(lambda code: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: str | None = None

    # --- the parser's callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = f"more than {self.max_headers} headers"
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    # --- feeding ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        while data:
            if self._refusal is not None or self.transport.is_closing():
                return
            if not self._in_head:
                super().data_received(data)
                return
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refusal = f"request head over {self.max_header_bytes} bytes"
                self.send_400_response(self._refusal)
                return
            part, data = data[:room], data[room:]
            self._head_bytes += len(part)
            super().data_received(part)
            # the head may have ended in ``part``: the rest is body, or a next request

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self.on_refused(REFUSAL_CODE)
        body = json.dumps({"error": REFUSAL_CODE, "detail": self._refusal}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def bounded_httptools(
    max_header_bytes: int, max_headers: int, on_refused: Callable[[str], None]
) -> type[BoundedHttpTools]:
    """A :class:`BoundedHttpTools` with these bounds (uvicorn instantiates the class)."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpTools,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "on_refused": staticmethod(on_refused),
        },
    )


__all__ = ["REFUSAL_CODE", "BoundedHttpTools", "bounded_httptools"]
