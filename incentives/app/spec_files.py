"""Reading a promotion's spec file and its audience from disk, where the client runs.

Files are read by `bounded_files`: regular files only, within their limits (a spec at most
`MAX_SPEC_BYTES`; an audience streamed, each line at most `MAX_LINE_BYTES`). A spec's
`audience.file` is found relative to the spec file's directory and must lie inside it once
symbolic links are followed (or inside the caller's `root`, the CLI's `--audience-root`): a spec
from someone else cannot make the client read `/etc/passwd`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from incentives.app.bounded_files import open_regular, read_limited, text_lines
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import shown
from incentives.domain.models import Model
from incentives.domain.promotion_spec import PromotionSpec, audience_ids, parse_spec
from incentives.domain.spec_documents import InvalidSpec

MAX_SPEC_BYTES = 1_000_000  # an inline audience belongs in a CSV beyond this
# A file name from a spec is echoed as written when it looks like one, else escaped and cut short.
_PLAIN_NAME = re.compile(r"[\w./-]{1,80}")


class AudienceSurvey(Model):
    """What `promotion check` says of an audience before anything is staged."""

    size: int
    duplicates: int


def read_spec(path: Path) -> PromotionSpec:
    """The spec file at `path` (YAML, or JSON for a `.json` name), parsed; errors name `FILE`
    for the file itself and the spec's field for its content."""
    handle = open_regular(path, "FILE", str(path))
    data = read_limited(
        handle, MAX_SPEC_BYTES, "FILE", f"{path} is larger than {MAX_SPEC_BYTES:,} bytes: put the audience in a CSV"
    )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InvalidSpec("FILE", f"{path} is not UTF-8 text (line {line})") from None
    return parse_spec(text, json_file=path.suffix.lower() == ".json")


def audience(spec: PromotionSpec, spec_path: Path, *, root: Path | None = None) -> Iterator[str]:
    """The spec's customer ids, streamed. A file is found relative to the spec file's directory
    and read only if it lies inside that directory, or inside `root`, after following links."""
    if spec.audience.customers is not None:
        return iter(spec.audience.customers)
    assert spec.audience.file is not None, "a spec has a file or customers"
    written = spec.audience.file
    name = written if _PLAIN_NAME.fullmatch(written) else shown(written)
    directories = [_resolved(spec_path.parent, "FILE")]
    if root is not None:
        directories.append(_resolved(root, "--audience-root"))
        if not directories[-1].is_dir():
            raise InvalidInput("--audience-root", f"is not a directory: {root}")
    try:
        target = (directories[0] / written).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL in the name
        raise InvalidSpec("audience.file", f"{name} cannot be resolved to a file") from None
    if not any(target.is_relative_to(directory) for directory in directories):
        where = (
            "the spec's directory: put the CSV beside the spec, or give --audience-root DIR"
            if root is None
            else "the spec's directory and --audience-root: put the CSV in one of them"
        )
        raise InvalidSpec("audience.file", f"{name} is outside {where}")
    return audience_file(target, name=name, follow_symlinks=False)


def _resolved(directory: Path, field: str) -> Path:
    try:
        return directory.resolve()
    except (OSError, RuntimeError, ValueError):
        raise InvalidInput(field, f"cannot resolve the directory {directory}") from None


def audience_file(
    path: Path, *, name: str | None = None, field: str = "audience.file", follow_symlinks: bool = True
) -> Iterator[str]:
    """The customer ids of a CSV, streamed in bounded chunks: opened now, so a missing file or
    one that is not a regular file fails now; a bad line fails when it is read."""
    handle = open_regular(path, field, name or str(path), follow_symlinks=follow_symlinks)
    return audience_ids(text_lines(handle, field), field)


def survey(ids: Iterator[str]) -> AudienceSurvey:
    """Counts the distinct ids and the duplicates (a duplicate of one load is granted once)."""
    seen: set[str] = set()
    lines = 0
    for customer in ids:
        lines += 1
        seen.add(customer)
    return AudienceSurvey(size=len(seen), duplicates=lines - len(seen))
