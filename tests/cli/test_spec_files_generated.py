"""Spec files generated over the spec's structure (a valid spec mutated: nesting at various depths,
keys given twice, wrong types, huge strings, unknown and missing keys; YAML and JSON), and
hand-made hostile files (100,000 levels deep, a FIFO, `/dev/zero`, a 2 GB sparse audience, a
billion laughs), all read by `incentives promotion check` in ONE child process: every exit code
is 0 or 2 (2 wherever the file must be refused), and the child's peak RSS stays under 200 MiB.

The child is measured, not this process: it reports its own peak RSS (VmHWM) when done. Each file
has an alarm in the child, so a read that hangs fails the test instead of stalling it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.conftest import CLOSED_DATABASE, CLOSED_TEMPORAL

MAX_RSS_MIB = 200
MAX_DEPTH = 20  # the readers' limit, restated: the test says what it expects
MAX_SPEC_BYTES = 1_000_000
PER_FILE_SECONDS = 10
CHILD_SECONDS = 120  # past it the child is killed: only a hang outside every alarm gets there
MAX_CHILD_DATA = 1024**3  # RLIMIT_DATA of the child: far above the limit asserted, far below the machine's

BASE: dict[str, Any] = {
    "id": "generated-2030",
    "name": "Generated credit",
    "kind": "credit",
    "value": {"amount": "10.00"},
    "currency": "USD",
    "validity": {"expires_after": "14d", "remind_before": "2d"},
    "budget": {"amount": "500.00", "max_grants": "40", "pool": {"id": "generated", "amount": "2000.00"}},
    "audience": {"file": "audience.csv"},
    "schedule": {"starts_at": "2030-03-20T09:00:00-04:00", "ends_at": "2030-04-20T23:59:59-04:00"},
}
MAPPINGS: list[tuple[str, ...]] = [(), ("value",), ("validity",), ("budget",), ("budget", "pool"), ("audience",)]


def _at(spec: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = spec
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


LEAVES: list[tuple[str, ...]] = [
    (*parent, key)
    for parent in [*MAPPINGS, ("schedule",)]
    for key, value in _at(BASE, parent).items()
    if not isinstance(value, dict)
]

CHILD = """
import json, resource, signal, sys

# A reader that regressed to reading /dev/zero whole fails here with a MemoryError (exit 4), at
# this bound, instead of taking the machine's memory before its alarm goes off.
resource.setrlimit(resource.RLIMIT_DATA, (int(sys.argv[4]), int(sys.argv[4])))
import client

class Hung(BaseException):
    '''The alarm went off: not an Exception, so the command's own handler does not catch it.'''

def alarm(signum, frame):
    raise Hung()

signal.signal(signal.SIGALRM, alarm)
codes = []
for path in json.loads(open(sys.argv[1]).read()):
    signal.alarm(int(sys.argv[3]))
    try:
        codes.append(client.run(["promotion", "check", path]))
    except Hung:
        codes.append("hung")
    finally:
        signal.alarm(0)
# The peak of this process image, from the kernel (VmHWM): `ru_maxrss` is no good here, as Linux
# carries the parent's peak into a child across fork and exec, and the parent is the test session.
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
with open(sys.argv[2], "w") as out:
    json.dump({"codes": codes, "peak_kib": peak_kib}, out)
"""


@dataclass
class Case:
    """One spec: how it was made (for a failure's message), its text, and whether it must be refused."""

    what: str
    name: str
    text: str | None = None  # None: `name` is a path made by hand
    must_refuse: bool = False


# -- generated cases ------------------------------------------------------------------------------


def _nested(depth: int, kind: str, json_form: bool) -> str:
    leaf = '"x"' if json_form else "x"
    if kind == "list":
        return "[" * depth + leaf + "]" * depth
    key = '"a": ' if json_form else "a: "
    return ("{" + key) * depth + leaf + "}" * depth


wrong_values = st.one_of(
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=30),
)
mutations = st.one_of(
    st.tuples(
        st.just("nest"),
        st.sampled_from(LEAVES + MAPPINGS[1:]),
        st.integers(1, 40) | st.sampled_from([17, 18, 19, 20, 21, 1_000, 100_000]),
        st.sampled_from(["list", "map"]),
    ),
    st.tuples(st.just("twice"), st.sampled_from(MAPPINGS)),
    st.tuples(st.just("wrong"), st.sampled_from(LEAVES + MAPPINGS[1:]), wrong_values),
    st.tuples(st.just("huge"), st.sampled_from(LEAVES), st.sampled_from([1_000, 100_000, 1_100_000])),
    st.tuples(st.just("unknown"), st.sampled_from(MAPPINGS), st.text(min_size=1, max_size=20)),
    st.tuples(st.just("missing"), st.sampled_from(LEAVES + MAPPINGS[1:])),
)


@st.composite
def generated_specs(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], bool]:
    return draw(st.lists(mutations, max_size=3)), draw(st.booleans())


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    parent = _at(spec, path[:-1])
    if not isinstance(parent, dict):
        return False
    if value is ...:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return True


def _render(mutation_list: list[tuple[Any, ...]], json_form: bool) -> tuple[str, bool]:
    """The mutated spec's text, and whether it must be refused (a key twice, too deep, too large)."""
    spec = copy.deepcopy(BASE)
    nests: dict[str, tuple[int, str]] = {}
    twice: dict[str, str] = {}
    for index, (kind, path, *rest) in enumerate(mutation_list):
        if kind == "nest":
            _set(spec, path, f"ZZNEST{index}ZZ")
            nests[f"ZZNEST{index}ZZ"] = (len(path) + rest[0], _nested(rest[0], rest[1], json_form))
        elif kind == "twice":
            target = _at(spec, path)
            if isinstance(target, dict) and target:
                key = sorted(target)[0]
                target[f"ZZTWICE{index}ZZ"] = copy.deepcopy(target[key])
                twice[f"ZZTWICE{index}ZZ"] = key
        elif kind in ("wrong", "huge"):
            _set(spec, path, rest[0] if kind == "wrong" else "x" * rest[0])
        elif kind == "unknown":
            _set(spec, (*path, rest[0]), "surprise")
        else:
            _set(spec, path, ...)
    text = json.dumps(spec, indent=1) if json_form else yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    refuse = False
    for sentinel, (depth, nested) in nests.items():
        quoted = f'"{sentinel}"' if json_form else sentinel
        refuse |= quoted in text and depth > MAX_DEPTH
        text = text.replace(quoted, nested)
    for sentinel, key in twice.items():
        quoted, written = (f'"{sentinel}"', json.dumps(key)) if json_form else (sentinel, key)
        refuse |= quoted in text
        text = text.replace(quoted, written)
    return text, refuse or len(text.encode()) > MAX_SPEC_BYTES


def generated_cases() -> list[Case]:
    cases: list[Case] = []

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(generated_specs())
    def generate(drawn: tuple[list[tuple[Any, ...]], bool]) -> None:
        mutation_list, json_form = drawn
        text, refuse = _render(mutation_list, json_form)
        what = f"{'json' if json_form else 'yaml'} {[m if m[0] != 'huge' else m[:3] for m in mutation_list]!r:.300}"
        name = f"generated-{len(cases)}.{'json' if json_form else 'yaml'}"
        cases.append(Case(what, name, text, refuse))

    generate()
    return cases


# -- hand-made cases ------------------------------------------------------------------------------


def _spec_text(**changes: Any) -> str:
    return yaml.safe_dump({**BASE, **changes}, sort_keys=False)


def hostile_cases(directory: Path) -> list[Case]:
    os.mkfifo(directory / "fifo.yaml")
    os.mkfifo(directory / "fifo.csv")
    (directory / "zero.csv").symlink_to("/dev/zero")
    with (directory / "sparse.csv").open("wb") as handle:
        handle.truncate(2 * 1024**3)  # 2 GB, no newline, no disk used
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    customers = [f"customer-{n:06}" for n in range(45_000)]  # about 900 kB of YAML
    return [
        Case("100,000-deep YAML flow list", "deep-list.yaml", "[" * 100_000 + "]" * 100_000, True),
        Case("100,000-deep YAML flow mapping", "deep-map.yaml", "{a: " * 100_000, True),
        Case("100,000-deep JSON", "deep.json", '{"a": [' * 50_000 + "]}" * 50_000, True),
        Case("a billion laughs", "laughs.yaml", "l0: &l0 [lol, lol]\n" + laughs, True),
        Case("a FIFO as the spec", str(directory / "fifo.yaml"), None, True),
        Case("/dev/zero as the spec", "/dev/zero", None, True),
        Case("a FIFO as audience.file", "fifo-audience.yaml", _spec_text(audience={"file": "fifo.csv"}), True),
        Case("/dev/zero linked as audience.file", "zero.yaml", _spec_text(audience={"file": "zero.csv"}), True),
        Case("2 GB sparse audience.file", "sparse.yaml", _spec_text(audience={"file": "sparse.csv"}), True),
        Case("../ out of the spec dir", "passwd.yaml", _spec_text(audience={"file": "../" * 20 + "etc/passwd"}), True),
        Case("a name near the size limit", "long-name.yaml", _spec_text(name="n" * 990_000), True),
        Case("the base spec", "base.yaml", _spec_text(), False),
        Case("45,000 customers inline", "inline.yaml", _spec_text(audience={"customers": customers}), False),
    ]


# -- the run --------------------------------------------------------------------------------------


def _run_child(paths: list[str], directory: Path) -> tuple[list[Any], int, str]:
    """Exit codes of `promotion check` on each path, in one child; its peak RSS in KiB (as the child
    reads it of itself); its stderr."""
    (directory / "paths.json").write_text(json.dumps(paths))
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": CLOSED_TEMPORAL,
        "DATABASE_URL": CLOSED_DATABASE,
        "INCENTIVES_HOME": str(directory / "home"),
    }
    command = [sys.executable, "-c", CHILD, str(directory / "paths.json"), str(directory / "codes.json")]
    with (directory / "stderr.txt").open("wb") as stderr:
        child = subprocess.Popen(
            [*command, str(PER_FILE_SECONDS), str(MAX_CHILD_DATA)],
            cwd=Path(__file__).parents[2],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        watchdog = threading.Timer(CHILD_SECONDS, child.kill)
        watchdog.start()
        try:
            child.wait()
        finally:
            watchdog.cancel()
    errors = (directory / "stderr.txt").read_text(errors="replace")
    assert child.returncode == 0, f"the child failed ({child.returncode}): {errors[-2000:]}"
    result = json.loads((directory / "codes.json").read_text())
    return result["codes"], result["peak_kib"], errors


def test_generated_and_hostile_spec_files_exit_0_or_2_within_200_mib(tmp_path: Path) -> None:
    (tmp_path / "audience.csv").write_text("customer_id\nc1\nc2\n")
    cases = [*generated_cases(), *hostile_cases(tmp_path)]
    for case in cases:
        if case.text is not None:
            (tmp_path / case.name).write_text(case.text, encoding="utf-8")
    paths = [case.name if case.name.startswith("/") else str(tmp_path / case.name) for case in cases]
    codes, peak_kib, errors = _run_child(paths, tmp_path)
    assert len(codes) == len(cases), errors[-2000:]
    wrong = [
        f"{case.what} ({case.name}): exit {code}"
        for case, code in zip(cases, codes, strict=True)
        if code not in ((2,) if case.must_refuse else (0, 2))
    ]
    assert wrong == [], f"{wrong[:10]}\n{errors[-2000:]}"
    assert codes[-2:] == [0, 0], "the valid hand-made specs pass"
    assert peak_kib / 1024 < MAX_RSS_MIB, f"the child's peak RSS was {peak_kib / 1024:.0f} MiB"
