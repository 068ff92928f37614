"""The ``bench`` command (``python -m bench``): the parser and one function per sub-command.

:mod:`bench.cli.main` builds the parser from stdlib-only argument modules; each
sub-command is a small function in ``train`` (variants, train, throughput),
``sweep`` (sweep, worker, status, dashboard), ``results`` (ls, compare, export,
report, reproduce) or ``posthoc`` (landscape, attention), registered through
:mod:`bench.cli.registry`, and imports its code when it runs.
:mod:`bench.cli.run_table` is the table ``bench train`` prints at the end of a run.
"""

from bench.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
