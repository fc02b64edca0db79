"""An audience CSV that arrives as a stream of bytes (an HTTP upload) into customer ids, read as
`spec_files` reads a file: lines of at most `MAX_LINE_BYTES`, UTF-8, the id in the first column
(RFC 4180), a byte-order mark, a header line and blank lines skipped. Nothing is held but the
line being read; the first bad line stops the stream, naming its number, and so does a stream
larger than its caller's limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from incentives.app.bounded_files import MAX_LINE_BYTES
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import check_id
from incentives.domain.promotion_spec import AUDIENCE_HEADERS, first_field
from incentives.domain.spec_documents import InvalidSpec


async def csv_lines(chunks: AsyncIterable[bytes], field: str, *, max_bytes: int) -> AsyncIterator[str]:
    """The stream's lines as text, without their line ending (LF or CRLF): every line, blank ones
    too, so that a caller's count is the line's number."""
    number, pending, total = 0, b"", 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise InvalidSpec(field, f"is larger than {max_bytes:,} bytes")
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()  # the line the next chunk continues
        for line in lines:
            number += 1
            yield _decoded(line, number, field)
        if len(pending) > MAX_LINE_BYTES and pending[MAX_LINE_BYTES:] != b"\r":
            raise InvalidSpec(field, _too_long(number + 1))
    if pending:
        yield _decoded(pending, number + 1, field)


def _decoded(line: bytes, number: int, field: str) -> str:
    line = line.removesuffix(b"\r")
    if len(line) > MAX_LINE_BYTES:
        raise InvalidSpec(field, _too_long(number))
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpec(field, f"line {number}: is not UTF-8 text") from None


def _too_long(number: int) -> str:
    return f"line {number} is longer than {MAX_LINE_BYTES:,} bytes: one customer id a line (at most 128 characters)"


async def csv_ids(lines: AsyncIterable[str], field: str) -> AsyncIterator[str]:
    """Customer ids from a CSV's lines, as `promotion_spec.audience_ids` reads them from a file."""
    seen_any = False
    number = 0
    async for line in lines:
        number += 1
        try:
            text = first_field(line.lstrip("\ufeff"))
            if not text or (number == 1 and text.lower() in AUDIENCE_HEADERS):
                continue
            check_id(text, field)
        except InvalidInput as error:
            raise InvalidSpec(field, f"line {number}: {error.reason}") from None
        seen_any = True
        yield text
    if not seen_any:
        raise InvalidSpec(field, "holds no customer ids")
