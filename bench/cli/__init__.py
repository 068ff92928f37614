"""The ``bench`` command (``python -m bench``): the parser and one function per sub-command.

:mod:`bench.cli.commands` builds the parser from stdlib-only argument modules and
imports each sub-command's code when it runs; :mod:`bench.cli.run_table` is the
table ``bench train`` prints at the end of a run.
"""

from bench.cli.commands import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
