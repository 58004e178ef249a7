"""Reading an OTLP/HTTP request body safely: bounded size, bounded gzip, known encodings."""

from __future__ import annotations

import zlib

from aiohttp import web

__all__ = [
    "MAX_PAYLOAD",
    "PayloadError",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "decompress",
    "read_body",
]

MAX_PAYLOAD = 8 * 1024 * 1024  # after decompression
_CHUNK = 64 * 1024


class PayloadError(ValueError):
    """The request cannot be read as OTLP (answered 400); nothing from it is stored."""

    status = 400


class PayloadTooLarge(PayloadError):
    status = 413


class UnsupportedMediaType(PayloadError):
    status = 415


async def read_body(request: web.Request, limit: int = MAX_PAYLOAD) -> bytes:
    """The raw body, refusing it as soon as it passes ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
    return bytes(body)


def decompress(body: bytes, content_encoding: str, limit: int = MAX_PAYLOAD) -> bytes:
    """Undo ``Content-Encoding: gzip``; never inflates more than ``limit`` bytes (zip bombs)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise UnsupportedMediaType(f"Content-Encoding {content_encoding!r} is not supported")
    out = bytearray()
    rest = body
    while rest:  # a gzip stream may hold several members
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise PayloadError(f"body is not valid gzip: {exc}") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"body inflates past {limit} bytes")
        if not inflater.eof:
            raise PayloadError("gzip body is truncated")
        rest = inflater.unused_data
    return bytes(out)
