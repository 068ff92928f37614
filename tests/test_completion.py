"""``bench completion bash|zsh``: a completion script from the real parser, sourced by bash."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import COMMANDS, build_parser
from bench.cli.completion import completion_script
from tests.test_cli_imports import run_probe

BENCH = [sys.executable, "-m", "bench"]


def script(shell: str) -> str:
    """What ``bench completion SHELL`` prints, from a real process."""
    proc = subprocess.run(
        [*BENCH, "completion", shell], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stderr == ""
    return proc.stdout


def complete(line: str, cwd: Path) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end), with the script sourced."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    program = (
        f"source <({' '.join(BENCH)} completion bash) || exit 9\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT={len(line)}\n"
        "_shtab_bench\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_script_names_every_sub_command(shell):
    text = script(shell)
    if shell == "bash":
        listed = re.search(r"^_shtab_bench_subparsers=\((.*)\)$", text, re.M)
        assert listed is not None
        assert set(listed.group(1).split()) == set(COMMANDS)
    else:
        assert text.startswith("#compdef bench")
        for name in COMMANDS:  # each listed with its help, and dispatched
            assert re.search(rf"^\s*{name}:'", text, re.M), name
            assert re.search(rf"^\s*{name}\) _arguments ", text, re.M), name


@needs_bash
def test_bash_sources_the_script_and_registers_bench():
    proc = subprocess.run(
        ["bash", "-c", f"source <({' '.join(BENCH)} completion bash) && complete -p bench"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip().endswith(" bench")


@needs_bash
def test_bash_completes_sub_commands_flags_and_paths(tmp_path):
    (tmp_path / "a-run").mkdir()
    (tmp_path / "a-spec.yaml").write_text("name: x\n")
    assert complete("bench wor", tmp_path) == ["worker"]
    assert complete("bench export x --fo", tmp_path) == ["--format"]
    assert complete("bench sweep x --launcher ", tmp_path) == ["local", "slurm"]
    assert complete("bench landscape a", tmp_path) == ["a-run"]  # a directory, not the spec
    assert sorted(complete("bench sweep a", tmp_path)) == ["a-run", "a-spec.yaml"]


def test_the_script_follows_the_parser_when_a_command_is_added():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.add_parser("brandnew", help="a command added later")  # type: ignore[attr-defined]
    assert "brandnew" in completion_script(parser, "bash")
    assert "brandnew" not in script("bash")


def test_completion_imports_no_torch_lightning_or_optuna():
    result = run_probe("completion", "bash")
    assert result["code"] == 0 and "_shtab_bench" in result["stdout"]
    assert result["heavy"] == []
