"""A spec file's text (YAML or JSON) into plain data: mappings, lists, text, booleans and nulls
(and numbers, in JSON), read one token or event at a time, never recursively.

Refused before anything is built, each naming where: nesting deeper than `MAX_DEPTH` (the real
spec is 3 deep), a key given twice in one mapping (named by its path and both lines), and, in
YAML, anchors and aliases (a few lines of them expand into billions of values), explicit tags
other than `!!str`, keys that are not text, and more than one document. YAML plain scalars are
text, except booleans and nulls: `amount: 10.10` is the text "10.10", never a binary float.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import shown

# Python's own readers recurse once per level (json.loads, yaml's composer): past about a
# thousand levels they fail with RecursionError. Far below that, and far above the 3 levels a
# spec uses, nesting is a mistake or an attack.
MAX_DEPTH = 20
# A JSON spec's whole numbers are counts of at most 10 digits; `int` refuses a number past 4,300
# digits with a ValueError, which is not a JSONDecodeError.
MAX_DIGITS = 30


class InvalidSpec(InvalidInput):
    """An error in a spec file or an audience CSV, named by the file's own field (`currency`,
    `budget.pool.amount`, `audience.file`), never by a command-line flag of the same name."""


class _TextLoader(yaml.SafeLoader):
    """YAML whose plain scalars stay text, except booleans and nulls."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = (None, "!", f"{_TAG}map", f"{_TAG}seq")
_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def key_name(key: object) -> str:
    """A key as a field's path shows it: as written when it looks like a key, else escaped and cut short."""
    return key if isinstance(key, str) and _KEY.fullmatch(key) else shown(str(key))


@dataclass
class _Frame:
    """One open mapping or list: its path, its items so far, and what comes next in it."""

    path: str
    items: dict[str, Any] | list[Any]
    lines: dict[str, int] = field(default_factory=dict)  # a mapping's keys, each with its line
    key: str | None = None  # a mapping's key whose value comes next; None while a key comes next
    index: int = 0  # a list's next item


class _Nesting:
    """The open mappings and lists, outermost first, followed one token at a time: it refuses
    nesting past `MAX_DEPTH` and a key given twice, and places each value where it belongs."""

    def __init__(self) -> None:
        self.frames: list[_Frame] = []
        self.documents: list[Any] = []

    def expects_key(self) -> bool:
        return bool(self.frames) and isinstance(self.frames[-1].items, dict) and self.frames[-1].key is None

    def here(self) -> str:
        """The path of the innermost open mapping or list ("spec" at the top)."""
        return self.frames[-1].path if self.frames and self.frames[-1].path else "spec"

    def child_path(self) -> str:
        if not self.frames:
            return "spec"
        top = self.frames[-1]
        if isinstance(top.items, list):
            return f"{top.path}[{top.index}]"
        name = key_name(top.key)
        return f"{top.path}.{name}" if top.path else name

    def open(self, items: dict[str, Any] | list[Any], line: int, *, place: bool) -> None:
        if len(self.frames) >= MAX_DEPTH:
            raise InvalidSpec("spec", f"is nested deeper than {MAX_DEPTH} levels, at line {line} (a spec is 3 deep)")
        path = "" if not self.frames else self.child_path()
        if place:
            self.place(items)
        self.frames.append(_Frame(path, items))

    def key(self, key: str, line: int) -> None:
        top = self.frames[-1]
        top.key = key
        if key in top.lines:
            first = top.lines[key]
            where = f"on line {line}" if first == line else f"at lines {first} and {line}"
            raise InvalidSpec(self.child_path(), f"given twice, {where}")
        top.lines[key] = line

    def close(self) -> None:
        self.frames.pop()

    def place(self, value: Any) -> None:
        if not self.frames:
            self.documents.append(value)
            return
        top = self.frames[-1]
        if isinstance(top.items, list):
            top.items.append(value)
            top.index += 1
        else:
            assert top.key is not None, "a value follows its key"
            top.items[top.key] = value
            top.key = None


# -- YAML: its event stream (PyYAML's parser is a state machine, not a recursion) -----------------


def _yaml_data(text: str) -> Any:
    nesting = _Nesting()
    for event in yaml.parse(text, Loader=_TextLoader):
        line = event.start_mark.line + 1
        if getattr(event, "anchor", None) is not None:  # an AliasEvent's anchor is the name it refers to
            raise InvalidSpec("spec", f"line {line}: anchors (&) and aliases (*) are not allowed: write each value out")
        if isinstance(event, yaml.DocumentStartEvent) and nesting.documents:
            raise InvalidSpec("spec", f"line {line}: a second document: a spec file holds one")
        if isinstance(event, yaml.ScalarEvent):
            _yaml_scalar(nesting, event, line)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            _yaml_collection(nesting, event, line)
        elif isinstance(event, yaml.CollectionEndEvent):
            nesting.close()
    return nesting.documents[0] if nesting.documents else None


def _scalar_tag(event: yaml.ScalarEvent) -> str:
    """The scalar's tag as PyYAML's composer resolves it, with the loader's resolvers."""
    if event.tag not in (None, "!"):
        return str(event.tag)
    if event.implicit[0]:  # plain: a boolean or a null may be meant
        resolvers = _TextLoader.yaml_implicit_resolvers
        for tag, regexp in [*resolvers.get(event.value[:1], []), *resolvers.get(None, [])]:
            if regexp.match(event.value):
                return str(tag)
    return f"{_TAG}str"


def _yaml_scalar(nesting: _Nesting, event: yaml.ScalarEvent, line: int) -> None:
    tag = _scalar_tag(event)
    if tag == f"{_TAG}str":
        value: Any = event.value
    elif tag == f"{_TAG}bool":
        value = yaml.constructor.SafeConstructor.bool_values[event.value.lower()]
    elif tag == f"{_TAG}null":
        value = None
    else:
        raise InvalidSpec("spec", f"line {line}: the tag {_tag_name(tag)} is not allowed: write values as plain text")
    if not nesting.expects_key():
        nesting.place(value)
    elif isinstance(value, str):
        nesting.key(value, line)
    else:
        raise InvalidSpec(nesting.here(), f"line {line}: the key {shown(event.value)} must be text: quote it")


def _tag_name(tag: str | None) -> str:
    return shown(str(tag).replace(_TAG, "!!", 1))


def _yaml_collection(nesting: _Nesting, event: yaml.CollectionStartEvent, line: int) -> None:
    if event.tag not in _COLLECTION_TAGS:
        raise InvalidSpec("spec", f"line {line}: the tag {_tag_name(event.tag)} is not allowed")
    if nesting.expects_key():
        raise InvalidSpec(nesting.here(), f"line {line}: a key must be text, not a mapping or a list")
    nesting.open({} if isinstance(event, yaml.MappingStartEvent) else [], line, place=True)


# -- JSON: its strings and punctuation, checked before `json.loads` (which recurses) -------------

# A string (escapes included), one of the six structural characters, or a quote no string closes.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}:,"]')


class _Lines:
    """Line numbers of positions in a text, asked in increasing order: each character counted once."""

    def __init__(self, text: str) -> None:
        self.text, self.position, self.line = text, 0, 1

    def at(self, position: int) -> int:
        self.line += self.text.count("\n", self.position, position)
        self.position = position
        return self.line


def _check_json(text: str) -> None:
    """Refuses nesting past `MAX_DEPTH` and a key given twice. Anything malformed stops the scan
    where it is: `json.loads` then names it, never reading past it, so never deeper."""
    nesting, lines = _Nesting(), _Lines(text)
    for match in _JSON_TOKEN.finditer(text):
        token = match[0]
        if token in ("{", "["):
            nesting.open({} if token == "{" else [], lines.at(match.start()), place=False)
        elif token in ("}", "]"):
            if not nesting.frames:
                return
            nesting.close()
        elif token == ",":
            if nesting.frames:
                top = nesting.frames[-1]
                top.key, top.index = None, top.index + 1
        elif token == '"':
            return
        elif token != ":" and nesting.expects_key():
            try:
                key = json.loads(token)
            except ValueError:
                return
            nesting.key(key, lines.at(match.start()))


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise InvalidSpec("spec", f"holds a number {digits:,} digits long; at most {MAX_DIGITS}")
    return int(text)


def _json_data(text: str) -> Any:
    _check_json(text)
    return json.loads(text, parse_int=_json_int)


# -- either --------------------------------------------------------------------------------------

_PROBLEM_LENGTH = 100


def load_document(text: str, *, json_file: bool) -> Any:
    """The file's data; a syntax error names its line, and every error is an `InvalidSpec`."""
    try:
        return _json_data(text) if json_file else _yaml_data(text)
    except json.JSONDecodeError as error:
        raise InvalidSpec("spec", f"not valid JSON: {error.msg} (line {error.lineno})") from None
    except yaml.reader.ReaderError as error:
        raise InvalidSpec("spec", f"not valid YAML: the character #x{error.character:04x} is not allowed") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(error, "problem", None) or "cannot be read")[:_PROBLEM_LENGTH]
        raise InvalidSpec("spec", f"not valid YAML: {problem}{where}") from None
