"""A diagnostic never fails a run: its errors become a warning and a record.

:func:`guard` wraps every Lightning hook a diagnostics callback overrides. The
first exception a hook raises is logged as a warning, appended to
:class:`DiagnosticErrors` (which ``train_run`` writes into ``status.json`` and
``summary.json`` as ``diagnostic_errors``) and switches that diagnostic off for
the rest of the run: its half-updated state is not trusted again. The run and
the other diagnostics go on.

Not caught: :class:`~bench.config.ConfigError` (a user's mistake, e.g. a
precision the Hessian cannot measure, is reported as such) and
``BaseException`` (Ctrl-C, SystemExit).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lightning.pytorch.callbacks import Callback

from bench.config import ConfigError

log = logging.getLogger("bench.diagnostics")

T = TypeVar("T")

# Every hook of lightning's Callback (the names Lightning calls on a callback), and
# ``summary`` (the whole-run numbers train_run asks a diagnostic for at the end).
HOOKS = (
    *(n for n, v in vars(Callback).items() if callable(v) and not n.startswith("_")),
    "summary",
)


@dataclass
class DiagnosticErrors:
    """The diagnostics that failed in one run, as ``"name: where: Type: message"`` lines."""

    messages: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)

    def record(self, name: str, where: str, error: Exception) -> None:
        text = str(error).strip().splitlines()
        line = f"{name}: {where}: {type(error).__name__}" + (f": {text[0]}" if text else "")
        self.messages.append(line)
        self.failed.add(name)
        log.warning("diagnostic %s failed; the run goes on without it", line)

    def call(self, name: str, where: str, fn: Callable[[], T], default: T) -> T:
        """``fn()``, or ``default`` (and a record) when it raises; skipped once ``name`` failed."""
        if name in self.failed:
            return default
        try:
            return fn()
        except ConfigError:
            raise
        except Exception as e:
            self.record(name, where, e)
            return default


def guard(callback: Callback, name: str, errors: DiagnosticErrors) -> Callback:
    """Make ``callback``'s overridden hooks report their errors to ``errors`` (in place)."""
    for hook in HOOKS:
        method = getattr(type(callback), hook, None)
        if method is None or method is getattr(Callback, hook, None):
            continue  # not overridden: nothing can fail
        bound = getattr(callback, hook)
        default: Any = {} if hook in ("state_dict", "summary") else None

        @functools.wraps(bound)
        def wrapped(*args: Any, _bound=bound, _hook=hook, _default=default, **kwargs: Any) -> Any:
            return errors.call(name, _hook, lambda: _bound(*args, **kwargs), _default)

        setattr(callback, hook, wrapped)
    return callback
