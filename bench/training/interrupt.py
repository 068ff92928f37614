"""Ctrl-C that cannot be lost while a run trains.

Python turns SIGINT into ``KeyboardInterrupt`` at whatever bytecode runs next.
When that is a weakref or garbage-collection callback (the import system's
module-lock clean-up is one, and a run imports lazily as it starts), the
interpreter prints "Exception ignored in ..." and carries on: the run would
train on as if nothing was pressed. :data:`CTRL_C` remembers the signal, and
:class:`HonourCtrlC` raises ``KeyboardInterrupt`` again at the next batch
boundary if the first one never arrived (``train_run`` watches from its start,
so a press lost while the run was still being set up stops it at its first
batch); Lightning then shuts down as for any Ctrl-C and ``train_run`` records
the run ``interrupted``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class CtrlC:
    """The SIGINT handler of a training run: remember the press, then raise as Python does."""

    def __init__(self) -> None:
        self.pending = False

    def handle(self, signum: int, frame: Any) -> None:
        self.pending = True
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Install :meth:`handle` for the block, where SIGINT is Python's default.

        A caller that handles SIGINT its own way (or ignores it), and any thread
        but the main one, is left alone.
        """
        self.pending = False
        main = threading.current_thread() is threading.main_thread()
        if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return
        signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGINT) == self.handle:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            self.pending = False


CTRL_C = CtrlC()


class HonourCtrlC(Callback):
    """Raise ``KeyboardInterrupt`` at the first batch end after a Ctrl-C that was lost.

    Runs in ``on_train_batch_end`` and ``on_validation_batch_end``. A Ctrl-C that
    arrived normally has already stopped fitting, so these hooks never see it.
    """

    def __init__(self, ctrl_c: CtrlC = CTRL_C) -> None:
        self.ctrl_c = ctrl_c

    def _check(self) -> None:
        if self.ctrl_c.pending:
            self.ctrl_c.pending = False
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._check()

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._check()
