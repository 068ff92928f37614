"""``train_run(RunConfig) -> RunResult``: the one place a training run is assembled.

``bench train``, every sweep trial and the tests call it. It validates
everything before it creates anything (:mod:`bench.training.prepare`), opens
the run directory (:mod:`bench.training.rundir`, see :mod:`bench.records`),
trains with a real Lightning Trainer (:mod:`bench.training.trainer`) and
records the outcome (:mod:`bench.training.finish`), reporting back plain data.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from bench import records
from bench.config import RunConfig
from bench.training.finish import RunResult, fail, finish_loggers, finish_run
from bench.training.interrupt import CTRL_C
from bench.training.preemption import PREEMPTION, Preempted
from bench.training.prepare import Prepared, prepare
from bench.training.rundir import OpenedRun, open_run
from bench.training.trainer import Assembled, assemble

__all__ = ["RunInterrupted", "RunResult", "train_run"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``run_dir`` holds it, ``resumable`` if it has a checkpoint."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.resumable = (run_dir / records.LAST_CKPT).is_file()


def train_run(
    cfg: RunConfig,
    callbacks: Sequence[Callback] = (),
    *,
    resume: Path | None = None,
    command: str | None = None,
    prepared: Prepared | None = None,
) -> RunResult:
    """Train one configuration and record it; see the module docstring.

    ``prepared``: ``prepare(cfg, resume)`` already done by the caller (``bench train``
    checks the data before Lightning loads), so the data is not built twice.

    A preemption signal (:mod:`bench.training.preemption`, when the caller installed its
    handlers) checkpoints the run at the next step boundary, records it
    ``preempted`` and raises :class:`~bench.training.preemption.Preempted`; ``resume=run_dir``
    continues it exactly.
    """
    with PREEMPTION.deferred(), CTRL_C.watching():  # a lost Ctrl-C: honoured while fitting
        prep = prepared if prepared is not None else prepare(cfg, resume)
        opened = open_run(prep, resume, command)
        t = prep.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        L.seed_everything(t.seed, workers=True, verbose=False)
        run = assemble(prep, opened, callbacks)
        started = time.time()
        status, reason = _fit(run, opened)
        return finish_run(prep.cfg, run, status, reason, started)


def _fit(run: Assembled, opened: OpenedRun) -> tuple[str, str]:
    """Fit (resuming from ``opened.ckpt_path``); (status, reason) of a run that ended normally.

    A preempted, interrupted or failed run is recorded here and raises.
    """
    trainer, module = run.trainer, run.module
    status, reason = "completed", ""
    try:
        trainer.fit(
            module,
            datamodule=run.run_data(),
            ckpt_path=opened.ckpt_path,
            weights_only=True,  # never unpickle code (see bench.training.checkpoint)
        )
        if module.diverged:
            status, reason = "diverged", f"non-finite train/loss at step {trainer.global_step}"
        elif run.tracker.last_step != trainer.global_step:
            trainer.validate(module, datamodule=run.run_data(), verbose=False)
        if status == "completed" and trainer.global_step < module.cfg.train.max_steps:
            status, reason = "stopped", f"stopped early at step {trainer.global_step}"
    except Preempted as e:
        run.record_status("preempted", f"preempted ({e}); resumable", step=e.step)
        finish_loggers(run.loggers, "failed")
        raise
    except SystemExit:
        # Lightning turns Ctrl-C into a graceful shutdown followed by sys.exit(1).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        run.record_status("interrupted", "interrupted (Ctrl-C)", step=trainer.global_step)
        finish_loggers(run.loggers, "failed")
        raise RunInterrupted(opened.run_dir) from None
    except BaseException as e:
        fail(e, run, trainer.global_step)
    return status, reason
