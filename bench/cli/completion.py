"""``bench completion bash|zsh``: a tab-completion script, made from the real parser.

shtab (:func:`shtab.complete`) reads :func:`bench.cli.main.build_parser`, so the script
knows every sub-command and flag as they are now; positionals and options that take a
directory (``RUN_DIR``, ``SWEEP_DIR``, ...) complete directories, those that take a file
(a spec, a config, ``--csv``) complete files. Building the parser loads no torch, so
neither does this command. Install::

    bench completion bash > ~/.local/share/bash-completion/completions/bench
    bench completion zsh > "${fpath[1]}/_bench"
"""

from __future__ import annotations

import argparse
import sys

from bench.cli.registry import command

SHELLS = ("bash", "zsh")
# What an argument names, by its metavar (else its dest), and so what completes it.
DIRECTORIES = {"RUN_DIR", "SWEEP_DIR", "RUN_OR_SWEEP", "DIR", "[DIR] [key=value ...]", "sweep"}
DIRECTORIES |= {"out", "runs"}  # bench sweep / worker --out, bench reproduce --runs
FILES = {"spec", "FILE", "FILE.png", "[CONFIG.yaml] [key=value ...]", "CLAIM", "csv"}


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in: bash or zsh")


@command(
    "completion",
    "print a tab-completion script for bash or zsh (bench completion bash > FILE)",
    _completion_args,
)
def cmd_completion(args: argparse.Namespace) -> int:
    from bench.cli.main import build_parser

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return 0


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The ``shell`` completion script of ``parser`` (its paths marked: :func:`mark_paths`)."""
    import shtab

    mark_paths(parser)
    return shtab.complete(parser, shell=shell)


def mark_paths(parser: argparse.ArgumentParser) -> None:
    """Tell shtab which arguments of every sub-command complete directories or files."""
    import shtab

    for sub in _subparsers(parser):
        for action in sub._actions:
            name = action.metavar if isinstance(action.metavar, str) else action.dest
            if name in DIRECTORIES:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
            elif name in FILES:
                action.complete = shtab.FILE  # type: ignore[attr-defined]


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [
        sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for sub in action.choices.values()
    ]
