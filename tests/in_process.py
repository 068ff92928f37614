"""``bench ARGS`` run by :func:`bench.cli.main` in the test's own process, read back like
a finished ``subprocess.run(..., capture_output=True, text=True)``.

A ``python -m bench`` process spends about 5 s of CPU importing torch and Lightning
before it does anything; in the test process they are imported already. Use this where
the behaviour under test is the command's (its output, exit code, files), not the
process's: signals, what a fresh interpreter imports, what happens at interpreter exit
and anything Slurm or a launcher starts stay real subprocesses.

What a fresh process would start from, and what it would leave behind, is kept per
call: the environment (``env`` replaces it, as ``subprocess.run(env=...)`` does), the
working directory, the signal handlers, the warning filters and torch's thread count
are restored afterwards. Output is captured at the file descriptors, so what C code or
a thread writes is in it too; warnings are shown as a fresh ``python -m bench`` shows
them (once per place, not DeprecationWarning) and are appended to stderr.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def bench_in_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None
) -> subprocess.CompletedProcess:
    """``bench ARGS`` in this process: its exit code, stdout and stderr."""
    import torch

    from bench.cli import main

    argv = ["bench", *map(str, args)]
    threads = torch.get_num_threads()
    handlers = {s: signal.getsignal(s) for s in SIGNALS}
    environ = dict(os.environ)
    where = os.getcwd()
    captured: list[_Captured] = []
    try:
        with ExitStack() as stack:
            out, err = stack.enter_context(_captured_fds())
            captured.append(err)
            code = _run(main, argv[1:], stack, env, cwd)
    except Exception as e:  # the test fails with the traceback; show what the command said
        if captured and captured[0].value:
            e.add_note(f"{' '.join(argv)}: stderr:\n{captured[0].value[-3000:]}")
        raise
    finally:
        os.chdir(where)
        os.environ.clear()
        os.environ.update(environ)
        for s, h in handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, code, out.text(), err.text())


def _run(main, args: list[str], stack: ExitStack, env, cwd) -> int:
    """``main(args)`` with a fresh interpreter's warning filters, in ``env`` and ``cwd``;
    its warnings are appended to stderr."""
    caught = stack.enter_context(warnings.catch_warnings(record=True))
    # each warning once per place, and these categories never
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    try:
        code = main(list(args))
    except SystemExit as e:
        code = _exit_code(e)
    sys.stdout.flush()
    for w in caught:
        sys.stderr.write(
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
        )
    sys.stderr.flush()
    return code


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)  # sys.exit("message"), as the interpreter does
    return 1


class _Captured:
    """What one file descriptor got; the text once the command finished."""

    def __init__(self, file) -> None:
        self.file = file
        self.value: str | None = None

    def text(self) -> str:
        assert self.value is not None, "read after the command finished"
        return self.value

    def read(self) -> None:
        self.file.seek(0)
        self.value = self.file.read().decode("utf-8", errors="replace")


@contextmanager
def _captured_fds():
    """Point file descriptors 1 and 2, ``sys.stdout``/``sys.stderr`` and the logging
    handlers that write to a stream (each bound to whatever stderr was when its library was
    imported, a capture of pytest's by now) at two temporary files."""
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        out, err = _Captured(out_file), _Captured(err_file)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {1: os.dup(1), 2: os.dup(2)}
        streams = sys.stdout, sys.stderr
        handlers = [(h, h.stream) for h in _stream_handlers()]
        try:
            os.dup2(out_file.fileno(), 1)
            os.dup2(err_file.fileno(), 2)
            sys.stdout, sys.stderr = (
                io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)
                for fd in (1, 2)
            )
            for h, stream in handlers:  # not setStream: it flushes the old one, maybe closed
                h.stream = sys.stdout if stream in (sys.__stdout__, streams[0]) else sys.stderr
            yield out, err
        finally:
            for h, stream in handlers:
                h.stream = stream
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            out.read()
            err.read()


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]
