"""The README's promises: two commands up front, and CI runs the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_opens_with_a_main_command_and_a_test_command():
    main, test = readme_commands()
    for cmd in (main, test):
        assert cmd.startswith("python3.11 -m venv .venv && ")
        assert "-c constraints.txt" in cmd
    assert "pytest" in test and "pytest" not in main


def test_the_readme_stays_a_two_minute_read():
    # A newcomer's page: reference material belongs in docs/ (about nanoGPT's 13.8k).
    assert len((ROOT / "README.md").read_text()) <= 12_000


def test_ci_runs_the_readme_test_command_verbatim():
    _, test = readme_commands()
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_ci_checks_lint_format_and_types_before_the_tests():
    _, test = readme_commands()
    steps = test.split(" && ")
    checks = [".venv/bin/ruff check", ".venv/bin/ruff format --check", ".venv/bin/mypy"]
    where = [next(i for i, s in enumerate(steps) if s.startswith(c)) for c in checks]
    assert max(where) < next(i for i, s in enumerate(steps) if "pytest" in s)


def test_constraints_pin_torch_without_a_local_build_tag():
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins


def test_the_readme_shows_every_command_with_an_example():
    from bench.cli import COMMANDS

    blocks = "\n".join(re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S))
    examples = {line.split()[1] for line in blocks.splitlines() if line.startswith("bench ")}
    assert set(COMMANDS) <= examples, set(COMMANDS) - examples


def _documented_commands() -> list[tuple[str, str]]:
    """``(file, command line)`` of every ``bench ...`` line in the README's and docs' bash blocks
    (continuation lines joined, comments dropped)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.+?)\n```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line.startswith("bench "):
                    found.append((path.name, line))
    return found


def _options(sub: str) -> set[str]:
    from bench.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    sub_parser = action.choices[sub]  # type: ignore[index]
    return {o for a in sub_parser._actions for o in a.option_strings}


def test_every_documented_command_and_flag_exists():
    from bench.cli import COMMANDS

    documented = _documented_commands()
    assert len(documented) > 20
    for where, line in documented:
        sub = line.split()[1]
        assert sub in COMMANDS, (where, line)
        flags = {t.split("=")[0] for t in line.split()[2:] if t.startswith("--")}
        assert flags <= _options(sub), (where, line, flags - _options(sub))
