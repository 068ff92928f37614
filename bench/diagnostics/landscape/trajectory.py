"""A run's training trajectory: parameter snapshots saved by :class:`.callback.LandscapeCallback`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Trajectory:
    """Parameter snapshots: ``params[i]`` (flat float32) after ``steps[i]`` optimizer steps."""

    steps: np.ndarray
    params: np.ndarray
    names: list[str]
    numels: list[int]


def load_trajectory(path: Path | str) -> Trajectory:
    """Read a ``trajectory.npz`` written by :class:`LandscapeCallback`."""
    with np.load(path) as f:
        return Trajectory(
            steps=f["steps"],
            params=f["params"],
            names=[str(n) for n in f["names"]],
            numels=[int(n) for n in f["numels"]],
        )
