"""Optional packages, each installed by an extra of ``pyproject.toml``, and the one error
that says which extra to install when one is missing.

``bench`` runs without them; the feature that needs one imports it through
:func:`require` when it is used, so a missing package is one line naming the extra
(``bench export --format parquet``: exit code 2; from Python: :class:`MissingExtra`),
never a traceback. Pure Python.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from bench.config.errors import ConfigError

if TYPE_CHECKING:
    from bench.config import RunConfig

# Optional package -> the extra that installs it ([project.optional-dependencies]).
EXTRAS = {"pandas": "notebook", "pyarrow": "parquet", "datasets": "data"}


class MissingExtra(ConfigError, ImportError):
    """An optional package is not installed; the message names the extra to install.

    A :class:`ConfigError` (the ``bench`` command prints it as one line, exit code 2)
    and an :class:`ImportError` (what a notebook expects of a missing package).
    """


def install_hint(package: str) -> str:
    """``pip install 'bench[EXTRA]'`` for an optional package."""
    return f"pip install 'bench[{EXTRAS[package]}]'"


def require(module: str, what: str, instead: str = "") -> ModuleType:
    """Import ``module`` (e.g. ``"pyarrow.parquet"``) or raise :class:`MissingExtra`.

    ``what`` is the feature that needs it (``"--format parquet"``), ``instead`` what
    works without it (``"allowed without it: csv, jsonl"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(module.partition(".")[0], what, instead) from None


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (cheap: a path lookup)."""
    if package in sys.modules:
        return sys.modules[package] is not None  # None: an import of it is refused
    return importlib.util.find_spec(package) is not None


def check_run_config(cfg: RunConfig) -> None:
    """:class:`MissingExtra` when the run needs an optional package that is not installed
    (``task.hf_dataset``: datasets), before anything heavy loads to find it out."""
    if cfg.task.name == "text" and cfg.task.hf_dataset and not installed("datasets"):
        raise _missing("datasets", f"task.hf_dataset={cfg.task.hf_dataset!r}", TEXT_INSTEAD)


# What a text run can read without datasets (tasks/text.py says the same).
TEXT_INSTEAD = "or use task.paths"


def _missing(package: str, what: str, instead: str) -> MissingExtra:
    tail = f"; {instead}" if instead else ""
    return MissingExtra(
        f"{what} needs {package}, which is not installed: {install_hint(package)}{tail}"
    )
