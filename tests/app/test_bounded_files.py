"""Bounded reading: regular files only, lines reassembled across chunks, and a line too long
refused after at most one chunk more than the limit, however long the file is."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from incentives.app.bounded_files import CHUNK_BYTES, MAX_LINE_BYTES, open_regular, read_limited, text_lines
from incentives.domain.spec_documents import InvalidSpec

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class Endless(io.RawIOBase):
    """A file of NUL bytes without end, counting what was read; past `give_up` bytes it raises,
    so that a reader that does not stop fails the test instead of running out of memory."""

    def __init__(self, give_up: int = 64 * 1024**2) -> None:
        self.read_bytes, self.give_up = 0, give_up

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.read_bytes > self.give_up:
            raise AssertionError(f"read {self.read_bytes:,} bytes and still reading")
        view = memoryview(buffer).cast("B")
        size = len(view)
        view[:] = bytes(size)
        self.read_bytes += size
        return size


def lines_of(data: bytes) -> list[str]:
    return list(text_lines(io.BytesIO(data), "f"))


class TestLines:
    @pytest.mark.parametrize("split", [b"\r\n", "é".encode()], ids=["crlf", "two-byte-character"])
    def test_lines_that_straddle_chunks_are_whole_and_numbered(self, split: bytes) -> None:
        full = [b"x" * 1000] * (CHUNK_BYTES // 1001)  # 1,001 bytes a line with its newline
        before = b"\n".join(full) + b"\n" + b"y" * (CHUNK_BYTES - 1001 * len(full) - 1)
        data = before + split + b"\nlast"
        assert data[CHUNK_BYTES - 1 : CHUNK_BYTES + 1] == split  # the chunk ends inside it
        lines = lines_of(data)
        assert len(lines) == len(full) + 2 + (split == b"\r\n")  # CRLF then LF: a blank line between
        assert lines[len(full)] == "y" * (CHUNK_BYTES - 1001 * len(full) - 1) + ("" if split == b"\r\n" else "é")
        assert lines[-1] == "last"

    def test_a_line_of_the_limit_passes_and_one_byte_more_is_refused_naming_it(self) -> None:
        at_limit = b"x" * MAX_LINE_BYTES
        assert lines_of(b"a\n" + at_limit + b"\r\n" + at_limit) == ["a", at_limit.decode(), at_limit.decode()]
        with pytest.raises(InvalidSpec, match=rf"^f: line 2 is longer than {MAX_LINE_BYTES:,} bytes"):
            lines_of(b"a\n" + at_limit + b"x\nb\n")
        with pytest.raises(InvalidSpec, match=r"^f: line 3 is longer than"):
            lines_of(b"a\nb\n" + at_limit + b"xy")

    def test_a_line_without_end_is_refused_after_one_chunk(self) -> None:
        endless = Endless()
        with pytest.raises(InvalidSpec, match=r"^f: line 1 is longer than"):
            list(text_lines(io.BufferedReader(endless, CHUNK_BYTES), "f"))
        assert endless.read_bytes <= 2 * CHUNK_BYTES

    def test_bytes_that_are_not_utf_8_name_their_line(self) -> None:
        with pytest.raises(InvalidSpec, match=r"^f: line 2: is not UTF-8 text"):
            lines_of(b"ok\n\xc3(\n")


class TestRegularFilesOnly:
    def test_a_fifo_a_device_and_a_directory_are_refused_unopened(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "fifo")
        for path, kind in ((tmp_path / "fifo", "a FIFO"), (Path("/dev/null"), "a device"), (tmp_path, "a directory")):
            with pytest.raises(InvalidSpec, match=rf"^f: \S+ is not a regular file \({kind}\)$"):
                open_regular(path, "f", str(path))

    def test_a_link_is_refused_when_links_must_not_be_followed(self, tmp_path: Path) -> None:
        (tmp_path / "real").write_text("x\n")
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with open_regular(tmp_path / "link", "f", "link") as handle:
            assert handle.read() == b"x\n"
        with pytest.raises(InvalidSpec, match=r"^f: cannot open link: "):
            open_regular(tmp_path / "link", "f", "link", follow_symlinks=False)

    def test_a_size_limit_is_read_not_believed(self, tmp_path: Path) -> None:
        path = tmp_path / "spec"
        path.write_bytes(b"x" * 11)
        assert read_limited(open_regular(path, "f", "spec"), 11, "f", "too large") == b"x" * 11
        with pytest.raises(InvalidSpec, match=r"^f: too large$"):
            read_limited(open_regular(path, "f", "spec"), 10, "f", "too large")
