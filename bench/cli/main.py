"""The ``bench`` command: the parser, the entry point, and one line per user error.

Each sub-command lives in a module of :mod:`bench.cli` and registers itself
(:func:`bench.cli.registry.command`); they are imported below in the order
``bench --help`` lists them. A user's mistake (ConfigError) becomes one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import shlex
import sys

from bench import __version__
from bench.cli.registry import COMMANDS
from bench.config import ConfigError

# in the order bench --help lists them
for _module in ("train", "sweep", "results", "posthoc", "completion"):
    importlib.import_module(f"bench.cli.{_module}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            2, f"{self.prog}: error: {message}{_suggestion(message)} (see {self.prog} --help)\n"
        )


def _suggestion(message: str) -> str:
    """`` (did you mean 'train'?)`` for a mistyped sub-command; empty otherwise."""
    m = re.search(r"invalid choice: '([^']*)'", message)
    close = difflib.get_close_matches(m.group(1), COMMANDS, n=1, cutoff=0.6) if m else []
    return f" (did you mean '{close[0]}'?)" if close else ""


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Which transformer architecture choice, and why.")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(fn=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bench`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        prog = f"bench {args.command}" if getattr(args, "command", None) else "bench"
        parser.exit(
            2, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)\n"
        )
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        code = int(args.fn(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader left (`bench variants | head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
    except ConfigError as e:
        print(f"bench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from bench.records import os_problem

        problem = os_problem(e)
        if problem is None:
            raise
        print(f"bench {args.command}: error: {problem[1]}", file=sys.stderr)
        return problem[0]
    except KeyboardInterrupt as e:
        print(f"bench {args.command}: {interrupted_message(args.command, e)}", file=sys.stderr)
        return 130


def interrupted_message(command: str, e: KeyboardInterrupt) -> str:
    """What to say after Ctrl-C: the exact command that resumes, where there is one."""
    run_dir = getattr(e, "run_dir", None)
    if run_dir is not None:
        if getattr(e, "resumable", False):
            return f"interrupted; resume with: bench train --resume {shlex.quote(str(run_dir))}"
        return f"interrupted before the first checkpoint; {run_dir} cannot be resumed"
    if command in ("sweep", "worker"):
        return "interrupted; rerun the same command to resume"
    return "interrupted"
