"""An audience CSV that arrives as a stream of bytes (an HTTP upload) into customer ids, read as
`spec_files` reads a file: lines of at most `MAX_LINE_BYTES`, UTF-8, the id in the first column
(RFC 4180), a byte-order mark, a header line and blank lines skipped. Nothing is held but the
line being read; the first bad line stops the stream, naming its number, and so does a stream
larger than its caller's limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from incentives.app.bounded_files import Lines
from incentives.domain.promotion_spec import NO_AUDIENCE_IDS, audience_id
from incentives.domain.spec_documents import InvalidSpec


async def csv_lines(chunks: AsyncIterable[bytes], field: str, *, max_bytes: int) -> AsyncIterator[str]:
    """The stream's lines as text, without their line ending (LF or CRLF): every line, blank ones
    too, so that a caller's count is the line's number."""
    lines, total = Lines(field), 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise InvalidSpec(field, f"is larger than {max_bytes:,} bytes")
        for line in lines.feed(chunk):
            yield line
    for line in lines.end():
        yield line


async def csv_ids(lines: AsyncIterable[str], field: str) -> AsyncIterator[str]:
    """Customer ids from a CSV's lines, as `promotion_spec.audience_ids` reads them from a file."""
    seen_any, number = False, 0
    async for line in lines:
        number += 1
        if (customer := audience_id(line, number, field)) is not None:
            seen_any = True
            yield customer
    if not seen_any:
        raise InvalidSpec(field, NO_AUDIENCE_IDS)
