"""Every `aib` command the README and docs/ show is one the CLI accepts: a renamed subcommand
or option fails here, not in a newcomer's terminal. The commands are parsed, never run."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from aibackend.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Fenced blocks of commands (bare ``` blocks hold pictures and output).
SHELL_FENCES = {"bash", "sh", "shell", "console"}


def _shell_blocks(path: Path) -> Iterator[str]:
    inside, lang, lines = False, "", []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            if inside and lang in SHELL_FENCES:
                yield "\n".join(lines).replace("\\\n", " ")
            inside, lang, lines = not inside, line.strip()[3:].strip(), []
        elif inside:
            lines.append(line)


def _aib_argv(line: str) -> list[str] | None:
    """The arguments of the `aib` command a shell line runs (alone, or as a stage of a pipe
    or list), or None when it runs none."""
    text = line.strip().removeprefix("$ ")
    # A synopsis: `<placeholder>` and `NAME` stand for one argument, `[...]` may be left out
    text = re.sub(r"<[^<>\s]+>", "1", text)
    text = re.sub(r"\s\[[^\]]*\]", "", text)
    text = re.sub(r"(?<![$\w-])[A-Z][A-Z_]*\b(?!=)", "1", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    stage: list[str] = []
    stages = [stage]
    try:
        for word in lexer:
            if word and set(word) <= set("|&;()<>"):
                stage = []
                stages.append(stage)
            else:
                stage.append(word)
    except ValueError:  # a shown output line, or a quote closed on a later line
        if re.match(r"\s*(\$ )?(\.venv/bin/)?aib\s", line):
            raise
        return None
    for words in stages:
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value aib ...
            words = words[1:]
        if words and words[0] in ("aib", ".venv/bin/aib"):
            return words[1:]
    return None


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        for block in _shell_blocks(path):
            for line in block.splitlines():
                argv = _aib_argv(line)
                if argv is not None:
                    found.append((f"{path.relative_to(ROOT)}: {line.strip()}", argv))
    return found


COMMANDS = _commands()


def test_the_docs_show_aib_commands() -> None:
    # A parser change that stopped finding them would make the next test pass vacuously
    assert len(COMMANDS) >= 80


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_each_documented_aib_command_parses(where: str, argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{where}: the CLI refuses it (exit status {e.code})"
