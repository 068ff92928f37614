"""The text ``bench train`` prints: the header (run directory, precision, config with
non-default values first) and a piped run's step and validation lines. Pure
formatting; :mod:`bench.training.progress` decides when to print them."""

from __future__ import annotations

import math
import textwrap
import time
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.records import fmt_duration

WIDTH = 100  # wrap width of the plain config lines
PLAIN_LINES = 10  # a piped run prints about this many step lines (plus validations)
BAR_EVERY_S = 0.2  # seconds between bar updates (each reads the loss from the device)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def config_diff(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values that differ from the defaults, values at their default), both flat."""
    defaults = RunConfig().flat()
    flat = cfg.flat()
    changed = {k: v for k, v in flat.items() if defaults.get(k, object()) != v}
    same = {k: v for k, v in flat.items() if k not in changed}
    return changed, same


def header_lines(
    cfg: RunConfig, run_dir: Path, width: int = WIDTH, precision: str = ""
) -> list[str]:
    """``run dir: ...``, ``precision: ...`` (what it resolved to and why, when given), then
    ``config (set): k=v ...``, then the defaults one section a line."""
    changed, same = config_diff(cfg)
    lines = [f"run dir: {run_dir}"]
    if precision:
        lines.append(f"precision: {precision}")  # one line, however long: grep finds it
    shown = " ".join(f"{k}={_fmt(v)}" for k, v in changed.items() if not k.startswith("tracking."))
    lines += textwrap.wrap(
        f"config (set): {shown or 'all defaults'}", width, subsequent_indent="  "
    )
    sections: dict[str, list[str]] = {}
    for k, v in same.items():
        section, _, key = k.partition(".")
        if section == "tracking" or not key:  # where records go; variant=None
            continue
        sections.setdefault(section, []).append(f"{key}={_fmt(v)}")
    for section, items in sections.items():
        lines += textwrap.wrap(
            f"  {section} (default): {' '.join(items)}", width, subsequent_indent="    "
        )
    return lines


def plain_every(max_steps: int, log_every: int) -> int:
    """Steps between plain lines: a multiple of ``log_every``, about PLAIN_LINES per run."""
    target = max(max_steps / PLAIN_LINES, 1)
    return max(log_every, math.ceil(target / log_every) * log_every)


def step_line(
    step: int, total: int, loss: float | None, tok_s: float | None, eta: float | None
) -> str:
    """``step 40/300  loss 1.234  1.2e+04 tok/s  eta 0m12s`` (a piped run's progress line)."""
    width = len(str(total))
    parts = [f"step {step:>{width}}/{total}"]
    parts.append(f"loss {loss:.4g}" if loss is not None else "loss -")
    parts.append(f"{tok_s:.3g} tok/s" if tok_s else "- tok/s")
    parts.append(f"eta {fmt_duration(eta)}")
    return "  ".join(parts)


def validation_line(step: int, total: int, metrics: dict[str, float]) -> str:
    """``val  step 100/300  val/loss 0.52  val/acc 0.81`` (headline validation metrics)."""
    keys = ("val/loss", "val/acc", "val/exact_match")
    shown = "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
    return f"val  step {step}/{total}  {shown}".rstrip()


class Rate:
    """Tokens/s and time left over the steps since the run (or its resume) started."""

    def __init__(self) -> None:
        self.start_time: float | None = None
        self.start_step = 0
        self.tokens = 0

    def begin(self, step: int) -> None:
        self.start_time, self.start_step, self.tokens = time.perf_counter(), step, 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def tok_s(self) -> float | None:
        elapsed = time.perf_counter() - (self.start_time or time.perf_counter())
        return self.tokens / elapsed if elapsed > 0 and self.tokens else None

    def eta(self, step: int, total: int) -> float | None:
        done = step - self.start_step
        if done <= 0 or self.start_time is None:
            return None
        return (time.perf_counter() - self.start_time) / done * (total - step)
