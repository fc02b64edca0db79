"""Reading the files a user names (a spec, an audience CSV), bounded in time and memory.

Regular files only: a FIFO, a device or a directory is refused before a byte is read, and the
file is opened without blocking, so a FIFO with no writer is refused, not waited on. Sizes are
enforced while reading, never taken from `st_size` (which is 0 for `/dev/zero` and may change
under us): a spec is read up to its limit and one byte more; a CSV streams in chunks of
`CHUNK_BYTES`, and a line longer than `MAX_LINE_BYTES` is refused as soon as the chunk holding its
first byte too many is read. Every error is an `InvalidSpec` naming the field and why.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from incentives.domain.spec_documents import InvalidSpec

CHUNK_BYTES = 64 * 1024
# A customer id is at most 128 characters (up to 512 bytes of UTF-8); the rest of a line is room
# for the columns an export adds beside it, which are ignored.
MAX_LINE_BYTES = 1024


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in a user's words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def open_regular(path: Path, field: str, name: str, *, follow_symlinks: bool = True) -> BinaryIO:
    """`path` opened for reading (blocking reads) if it is a regular file; `name` is how errors
    show it. Without `follow_symlinks`, a symbolic link there is refused (a path already resolved
    that became a link since)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise InvalidSpec(field, f"no such file: {name}") from None
    except PermissionError:
        raise InvalidSpec(field, f"cannot read {name}: permission denied") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        raise InvalidSpec(field, f"cannot open {name}: {getattr(error, 'strerror', None) or error}") from None
    try:
        kind = _kind(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise InvalidSpec(field, f"{name} is not a regular file ({kind})")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_limited(handle: BinaryIO, limit: int, field: str, too_large: str) -> bytes:
    """The whole file, if it holds at most `limit` bytes; `too_large` says why not otherwise."""
    with handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidSpec(field, too_large)
    return data


def text_lines(handle: BinaryIO, field: str) -> Iterator[str]:
    """The file's lines as text, without their line ending (LF or CRLF), streamed and closed at
    the end: every line, blank ones too, so that a caller's count is the line's number."""
    with handle:
        lines = Lines(field)
        while chunk := handle.read(CHUNK_BYTES):
            yield from lines.feed(chunk)
        yield from lines.end()


class Lines:
    """Bytes arriving in chunks (a file read, an upload) as lines of text, each decoded as it is
    reached: a line longer than `MAX_LINE_BYTES` is refused as soon as a chunk carries it past the
    limit, and nothing is held but the line being read."""

    def __init__(self, field: str) -> None:
        self._field = field
        self._number = 0
        self._pending = b""  # the line the next chunk continues

    def feed(self, chunk: bytes) -> Iterator[str]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._number += 1
            yield self._decoded(line, self._number)
        if len(self._pending) > MAX_LINE_BYTES and self._pending[MAX_LINE_BYTES:] != b"\r":
            raise InvalidSpec(self._field, _too_long(self._number + 1))

    def end(self) -> Iterator[str]:
        if self._pending:
            yield self._decoded(self._pending, self._number + 1)

    def _decoded(self, line: bytes, number: int) -> str:
        line = line.removesuffix(b"\r")
        if len(line) > MAX_LINE_BYTES:
            raise InvalidSpec(self._field, _too_long(number))
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSpec(self._field, f"line {number}: is not UTF-8 text") from None


def _too_long(number: int) -> str:
    return f"line {number} is longer than {MAX_LINE_BYTES:,} bytes: one customer id a line (at most 128 characters)"
