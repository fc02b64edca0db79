"""Reading a promotion's spec file and its audience from disk, where the client runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from incentives.domain.errors import InvalidInput
from incentives.domain.models import Model
from incentives.domain.promotion_spec import PromotionSpec, audience_ids, parse_spec

_MAX_SPEC_BYTES = 1_000_000  # an inline audience belongs in a CSV beyond this


class AudienceSurvey(Model):
    """What `promotion check` says of an audience before anything is staged."""

    size: int
    duplicates: int


def read_spec(path: Path) -> PromotionSpec:
    try:
        if path.stat().st_size > _MAX_SPEC_BYTES:
            raise InvalidInput("FILE", f"{path} is larger than {_MAX_SPEC_BYTES:,} bytes: put the audience in a CSV")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput("FILE", f"no such file: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as error:
        raise InvalidInput("FILE", f"cannot read {path}: {error.__class__.__name__}") from None
    return parse_spec(text, json_file=path.suffix.lower() == ".json")


def audience(spec: PromotionSpec, spec_path: Path) -> Iterator[str]:
    """The spec's customer ids, streamed; a file is found relative to the spec file."""
    if spec.audience.customers is not None:
        return iter(spec.audience.customers)
    assert spec.audience.file is not None, "a spec has a file or customers"
    return audience_file(spec_path.parent / spec.audience.file, shown=spec.audience.file)


def audience_file(path: Path, *, shown: str | None = None, field: str = "audience.file") -> Iterator[str]:
    """The customer ids of a CSV, streamed line by line: opened now, so a missing file fails now."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InvalidInput(field, f"no such file: {shown or path}") from None
    except (IsADirectoryError, PermissionError) as error:
        raise InvalidInput(field, f"cannot read {shown or path}: {error.__class__.__name__}") from None
    return _lines(handle, field)


def _lines(handle: TextIO, field: str) -> Iterator[str]:
    with handle:
        try:
            yield from audience_ids(handle, field)
        except UnicodeDecodeError:
            raise InvalidInput(field, "is not UTF-8 text") from None


def survey(ids: Iterator[str]) -> AudienceSurvey:
    """Counts the distinct ids and the duplicates (a duplicate of one load is granted once)."""
    seen: set[str] = set()
    lines = 0
    for customer in ids:
        lines += 1
        seen.add(customer)
    return AudienceSurvey(size=len(seen), duplicates=lines - len(seen))
