"""Reading a run's checkpoint without trusting it.

A checkpoint is a pickle, and unpickling can run any code the file names. Every
checkpoint bench reads (``bench train --resume``, ``bench landscape``, the DDP
ranks of a resumed run, and Lightning's own restore, which gets
``weights_only=True`` from :func:`bench.training.run.train_run`) goes through PyTorch's
restricted unpickler (``torch.load(weights_only=True)``): tensors, containers and
plain Python values only. The checkpoints bench writes hold nothing else.

A file that holds anything else, is cut short or is no checkpoint at all is a
:class:`~bench.config.ConfigError`: one line naming the file and the problem.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from bench.config import ConfigError

REQUIRED_KEYS = ("state_dict", "global_step")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``; ConfigError if unsafe or broken."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e)
        if "Weights only load failed" in detail or "Unsupported global" in detail:
            raise ConfigError(
                f"{path}: refused: the checkpoint holds objects other than tensors and plain data "
                f"({_global_named(detail)}); loading it could run code"
            ) from None
        raise ConfigError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise ConfigError(
            f"{path}: truncated or not a checkpoint ({type(e).__name__}: {_first_line(e)})"
        ) from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise ConfigError(
            f"{path}: not a bench checkpoint (needs the keys {', '.join(REQUIRED_KEYS)})"
        )
    return ckpt


def checkpoint_step(path: Path) -> int:
    """The training step a checkpoint was saved at (validates the whole file first)."""
    step = load_checkpoint(path)["global_step"]
    if not isinstance(step, int) or step < 0:
        raise ConfigError(f"{path}: global_step={step!r} is not a step number")
    return step


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _global_named(detail: str) -> str:
    """The forbidden global PyTorch names in its message, e.g. ``GLOBAL posix.system``."""
    m = re.search(r"GLOBAL \S+", detail)
    return m.group(0) if m else "an unsupported global"
