"""docs/runbooks: a page per alert, indexed, each confirming with our commands; every `incentives`
command on them parses with the real command line, and every `temporal` flag exists."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest

from incentives.cli import parser
from incentives.devstack.servers import TEMPORAL_BIN
from tests.ops.rules import RUNBOOKS, alerts

ALERT_NAMES = sorted(rule.name for rule in alerts())
PAGES = sorted(path for path in RUNBOOKS.glob("*.md") if path.name != "README.md")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`((?:incentives|temporal) [^`]+)`(?!`)")


def _commands(page: Path, program: str) -> list[list[str]]:
    """The page's command lines for `program`, in code blocks or inline code, each cut at its first
    shell operator (a pipe, `&&`, a redirection) and its comment."""
    text = page.read_text()
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    lines += [" ".join(span.split()) for span in INLINE.findall(FENCE.sub("", text))]
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        if words[:1] != [program]:
            continue
        operator = next((i for i, word in enumerate(words) if set(word) <= set("|&;<>()")), len(words))
        commands.append(words[1:operator])
    return commands


def test_every_alert_has_its_page_and_every_page_an_alert() -> None:
    assert [page.stem for page in PAGES] == ALERT_NAMES


def test_the_index_links_every_page() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    assert sorted(set(re.findall(r"\]\((Incentives\w+)\.md\)", index))) == ALERT_NAMES


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.stem)
def test_every_page_says_what_it_means_how_to_confirm_and_what_to_do(page: Path) -> None:
    text = page.read_text()
    assert text.startswith(f"# {page.stem}\n")
    for heading in ("## What it means", "## Confirm", "## What to do"):
        assert heading in text
    confirm = text.split("## Confirm", 1)[1].split("## What to do", 1)[0]
    assert re.search(r"^incentives \w", "\n".join(FENCE.findall(confirm)), re.MULTILINE), "confirm with our commands"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.stem)
def test_every_incentives_command_on_a_page_parses(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(page, "incentives")
    assert commands
    for argv in commands:
        try:
            parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"incentives {shlex.join(argv)}: {capsys.readouterr().err.strip()}")


@cache
def _flags(*subcommand: str) -> frozenset[str]:
    """The flags `temporal SUBCOMMAND` takes: its own (its --help) and the global ones (`temporal options`)."""
    texts = [
        subprocess.run([str(TEMPORAL_BIN), *args], capture_output=True, text=True, check=True, timeout=60).stdout
        for args in ([*subcommand, "--help"], ["options"])
    ]
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", "\n".join(texts)))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.stem)
def test_every_temporal_flag_on_a_page_exists(page: Path) -> None:
    for argv in _commands(page, "temporal"):
        subcommand = tuple(
            word for word in argv[: next((i for i, w in enumerate(argv) if w.startswith("-")), len(argv))]
        )
        used = {word.split("=", 1)[0] for word in argv if word.startswith("-")}
        assert used <= _flags(*subcommand), f"temporal {shlex.join(argv)}: {used - _flags(*subcommand)}"
