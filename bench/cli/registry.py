"""The registry of ``bench`` sub-commands and what the commands that take a config share.

Each sub-command is a function ``fn(args) -> int`` registered with :func:`command`
in one of the modules of :mod:`bench.cli`; every sub-command that trains takes
``[CONFIG.yaml] [key=value ...]`` (:func:`config_args`) and goes through
:func:`bench.config.build_run_config`.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn(args) -> int`` as ``bench NAME``."""

    def wrap(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, add_args, fn)
        return fn

    return wrap


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG.yaml] [key=value ...]",
        help="a YAML config, then dotted overrides (model.pos_encoding=rope, variant=llama)",
    )


def quiet_lightning() -> None:
    """Lightning's start-up banners (GPU/TPU available, tips) drown a run's own output."""
    import lightning  # noqa: F401 - sets its loggers to INFO on import; we override after

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG.yaml] [key=value ...]`` -> (path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def load_run_config(args: list[str]):
    from bench.config import build_run_config

    path, overrides = split_config_args(args)
    return build_run_config(path, overrides)
