"""What ``bench train`` shows while it runs: the resolved config, the run directory, progress.

On a terminal (stderr is a TTY) a rich progress bar counts the run's optimizer
steps (done / total) with the training loss, tokens/s and the time left. With
stderr piped or redirected, one plain line every ``plain_every`` steps and one
at each validation, so a log shows a run moving. Lightning's own bar (batches
of an "epoch", which a step-based run does not have) is switched off.

The header (run directory, the precision ``train.precision`` resolved to and
why, then the config with non-default values first) is printed when training
starts (:func:`bench.training.progress_lines.header_lines`).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import IO, Any

import lightning as L

from bench.config import RunConfig
from bench.training.progress_lines import (
    BAR_EVERY_S,
    Rate,
    header_lines,
    plain_every,
    step_line,
    validation_line,
)


class RunProgress(L.Callback):
    """Header at fit start, then a step-based bar (terminal) or plain lines (piped)."""

    def __init__(
        self, cfg: RunConfig, run_dir: Path, stream: IO[str], bar: bool, precision: str = ""
    ) -> None:
        self.cfg, self.run_dir, self.stream, self.bar = cfg, run_dir, stream, bar
        self.precision = precision  # the header's "precision: <value> (<reason>)" line
        self.total = cfg.train.max_steps
        self.every = plain_every(self.total, cfg.train.log_every)
        self.rate = Rate()
        self.loss: float | None = None
        self._progress: Any = None
        self._task: Any = None
        self._shown = 0.0  # perf_counter of the last bar update

    @classmethod
    def for_run(
        cls, cfg: RunConfig, run_dir: Path, stream: IO[str] | None = None, precision: str = ""
    ) -> RunProgress | None:
        """The progress callback for a run: a bar on a terminal, plain lines otherwise, or None.

        ``train.progress_bar``: None (default) picks by whether ``stream`` (stderr) is a
        terminal; True forces the bar; False shows nothing (no header either).
        """
        stream = stream or sys.stderr
        setting = cfg.train.progress_bar
        if setting is False:
            return None
        bar = stream.isatty() if setting is None else True
        return cls(cfg, run_dir, stream, bar, precision)

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self._line(text)

    def _line(self, text: str) -> None:
        # one write with its newline: print() writes them apart, and a Ctrl-C between the
        # two leaves the line open for the next message (the resume command) to join
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        for line in header_lines(self.cfg, self.run_dir, precision=self.precision):
            self._line(line)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.rate.begin(trainer.global_step)
        if not self.bar:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("step"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tok_s]} tok/s"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=self.total, completed=trainer.global_step, loss="-", tok_s="-"
        )

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        from bench.diagnostics.batches import batch_tokens

        self.rate.add(batch_tokens(batch) * max(trainer.world_size, 1))
        step = trainer.global_step
        now = time.perf_counter()
        if self._progress is not None:
            if now - self._shown < BAR_EVERY_S and step != self.total:
                return  # reading the loss syncs a GPU: a few times a second is enough
        elif step % self.every and step != self.total:
            return
        self._shown = now
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            value = float(loss.detach())
            self.loss = value if math.isfinite(value) else self.loss
        tok_s = self.rate.tok_s()
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=step,
                loss=f"{self.loss:.4g}" if self.loss is not None else "-",
                tok_s=f"{tok_s:.3g}" if tok_s else "-",
            )
        else:
            eta = self.rate.eta(step, self.total)
            self._print(step_line(step, self.total, self.loss, tok_s, eta))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self._print(validation_line(trainer.global_step, self.total, metrics))

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._stop()
