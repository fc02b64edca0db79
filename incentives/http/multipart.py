"""`multipart/form-data` (RFC 7578) read as it arrives: each part's headers (at most
`MAX_HEADER_BYTES`), then its body as chunks. Nothing more is held than one chunk and a delimiter's
length, so a part of a million customer ids streams straight on (into COPY) without being kept.
Anything malformed is an `InvalidInput` naming `body`, raised where it is found.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import shown

MAX_HEADER_BYTES = 8 * 1024
# What a sender may put before the first part (RFC 2046's preamble), which is skipped.
MAX_PREAMBLE_BYTES = 8 * 1024
# RFC 2046: 1 to 70 of these characters, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")
_PARAMETER = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


def boundary_of(content_type: str) -> bytes:
    """The boundary a `multipart/form-data; boundary=...` header names."""
    parameters = _parameters(content_type)
    boundary = parameters.get("boundary")
    if boundary is None or _BOUNDARY.fullmatch(boundary) is None:
        raise InvalidInput("Content-Type", "multipart/form-data needs a boundary of 1 to 70 characters (RFC 2046)")
    return boundary.encode("ascii")


def _parameters(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in _PARAMETER.findall(header):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.setdefault(name.lower(), value)
    return found


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


class MultipartReader:
    """Parts one at a time: `next_part` gives a part's headers, `body` its content, which must be
    read to its end before the next part is asked for."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes) -> None:
        self._chunks = chunks
        # A CRLF in front, so that the first delimiter looks like every other one.
        self._buffer = bytearray(b"\r\n")
        self._delimiter = b"\r\n--" + boundary
        self._started = False
        self._done = False

    async def _more(self) -> bool:
        try:
            self._buffer += await anext(self._chunks)
        except StopAsyncIteration:
            return False
        return True

    async def _need(self, size: int, *, what: str) -> None:
        while len(self._buffer) < size:
            if not await self._more():
                raise InvalidInput("body", f"the multipart body ends {what}")

    async def next_part(self) -> Part | None:
        """The next part's headers, or None once the closing delimiter is read."""
        if not self._started:
            await self._skip_preamble()
        if self._done:
            return None
        return await self._headers()

    async def _skip_preamble(self) -> None:
        self._started = True
        while (found := self._buffer.find(self._delimiter)) < 0:
            if len(self._buffer) > MAX_PREAMBLE_BYTES or not await self._more():
                raise InvalidInput("body", "no multipart boundary where the body starts (see Content-Type)")
        del self._buffer[: found + len(self._delimiter)]
        await self._after_delimiter()

    async def _after_delimiter(self) -> None:
        """After a delimiter: `--` closes the body (what follows is ignored); else the line ends."""
        await self._need(2, what="right after a boundary")
        if self._buffer.startswith(b"--"):
            self._done = True
            return
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES or not await self._more():
                raise InvalidInput("body", "a multipart boundary line does not end")
        if self._buffer[:end].strip(b" \t"):
            raise InvalidInput("body", "text after a multipart boundary on its line")
        del self._buffer[: end + 2]

    async def _headers(self) -> Part:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES or not await self._more():
                raise InvalidInput("body", f"a part's headers do not end within {MAX_HEADER_BYTES:,} bytes")
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        headers: dict[str, str] = {}
        for line in block.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon:
                raise InvalidInput("body", f"a part's header line is not `Name: value`: {shown(line)}")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise InvalidInput("body", "each part needs Content-Disposition: form-data; name=...")
        parameters = _parameters(disposition)
        if "name" not in parameters:
            raise InvalidInput("body", "a part's Content-Disposition has no name")
        return Part(parameters["name"], parameters.get("filename"), headers.get("content-type"))

    async def body(self) -> AsyncIterator[bytes]:
        """The current part's content, as it arrives, up to the next delimiter."""
        keep = len(self._delimiter) - 1  # a delimiter may straddle two chunks
        while True:
            found = self._buffer.find(self._delimiter)
            if found >= 0:
                if found:
                    yield bytes(self._buffer[:found])
                del self._buffer[: found + len(self._delimiter)]
                await self._after_delimiter()
                return
            if len(self._buffer) > keep:
                yield bytes(self._buffer[:-keep])
                del self._buffer[:-keep]
            if not await self._more():
                raise InvalidInput("body", "the multipart body ends inside a part (no closing boundary)")
