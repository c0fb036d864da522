"""What a user reads: the README stays short, and no user-facing text names development issues;
the CLI's help paragraphs wrap to the terminal instead of breaking where the source did."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from training.cli import app, reflow

ROOT = Path(__file__).resolve().parents[1]
# "issue 12", "issue-12", "issues 12/13", "issue #4", 'issue "CPU fallback"'
ISSUE = re.compile(r"\bissues?[ -]?#?\d+|\bissues? \"", re.IGNORECASE)


def _commands() -> list[list[str]]:
    """Every command path of the CLI: [], ["data"], ["data", "stats"], …"""
    paths = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def _help(path: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_is_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 10 * 1024, f"README.md is {size} bytes; details belong in docs/"


def _user_docs() -> list[Path]:
    return [ROOT / "README.md", ROOT / "models" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", _user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_name_no_issue_numbers(path):
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if ISSUE.search(line)]
    assert not hits, "\n".join(hits)


def test_cli_help_names_no_issue_numbers():
    hits = []
    for path in _commands():
        text = " ".join(_help(path, 200).split())  # a reference cut by the wrapping still counts
        hits += [f"fer-hybrid {' '.join(path)}: …{text[m.start() - 40:m.end() + 20]}…"
                 for m in ISSUE.finditer(text)]
    assert not hits, "\n".join(hits)


def _description(output: str) -> list[str]:
    """The help's prose: the lines between the usage line and the first option panel."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("╭")), len(lines))
    return [line.rstrip() for line in lines[start:end]]


def test_cli_help_paragraphs_wrap_at_the_terminal_width():
    """At 200 columns no prose line of any command's help ends short with its sentence going on
    in the next line (a hard break from the source); at 60 columns nothing is cut off."""
    breaks = []
    for path in _commands():
        lines = _description(_help(path, 200))
        for line, after in zip(lines, lines[1:]):
            # a line the terminal did not fill, followed by one continuing the sentence
            if line.strip() and len(line) < 150 and re.match(r" [a-z(]", after) and not line.endswith(":"):
                breaks.append(f"fer-hybrid {' '.join(path)}:\n  {line.strip()}\n  {after.strip()}")
    assert not breaks, "hard line breaks mid-sentence:\n" + "\n".join(breaks)

    # a known long sentence of `bench --help` on one line when there is room, wrapped when not
    wide = _help(["bench"], 200)
    assert ("each tool's download size, and each tool's accuracy on the same FER2013 PrivateTest"
            in wide)
    narrow = _help(["bench"], 60)
    assert max(len(line) for line in _description(narrow)) <= 60
    assert "Emulation.setCPUThrottlingRate" in narrow


def test_reflow_joins_paragraph_lines_and_keeps_examples():
    doc = """First line
    goes on.

    A paragraph broken
    in the source. Example:
      fer-hybrid train --model sepnet
      fer-hybrid export runs/a
    """
    assert reflow(doc) == ("First line goes on.\n\nA paragraph broken in the source. Example:\n"
                           "  fer-hybrid train --model sepnet\n  fer-hybrid export runs/a")
