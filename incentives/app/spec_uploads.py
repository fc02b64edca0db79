"""A promotion's spec as a caller sends it over the network (the HTTP API): the spec file's keys as
JSON, read by the same parser and within the same limits as a spec file. No file on the server is
ever read for it: the audience is inline (`audience.customers`), or uploaded as a CSV that streams
after the spec, in which case the spec names no customers (`audience` left out, or a `file` whose
name is only a label).
"""

from __future__ import annotations

import json

from incentives.app.spec_files import MAX_SPEC_BYTES
from incentives.domain.promotion_spec import PromotionSpec, parse_spec
from incentives.domain.promotions import PromotionTerms
from incentives.domain.spec_documents import InvalidSpec, load_document


def _text(data: bytes) -> str:
    if len(data) > MAX_SPEC_BYTES:
        raise InvalidSpec("spec", f"is larger than {MAX_SPEC_BYTES:,} bytes: upload the audience as a CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InvalidSpec("spec", f"is not UTF-8 text (line {line})") from None


def inline_spec(data: bytes) -> PromotionSpec:
    """A spec whose audience is in it (`audience.customers`)."""
    spec = parse_spec(_text(data), json_file=True)
    if spec.audience.customers is None:
        raise InvalidSpec(
            "audience.file",
            "no file is read over HTTP: give audience.customers, or upload the CSV as the `audience` part of a "
            "multipart/form-data request",
        )
    return spec


def spec_for_upload(data: bytes) -> PromotionTerms:
    """A spec whose audience is uploaded beside it: its terms alone."""
    document = load_document(_text(data), json_file=True)
    if isinstance(document, dict):
        audience = document.get("audience")
        if audience is None:
            document = {**document, "audience": {"file": "(uploaded)"}}
        elif not (isinstance(audience, dict) and set(audience) == {"file"}):
            raise InvalidSpec(
                "audience",
                "the audience is the uploaded `audience` part: leave it out of the spec, or give only a file",
            )
    return parse_spec(json.dumps(document), json_file=True).terms
