"""Preemption: a signal asks a run to stop soon; it checkpoints at a step boundary and stops.

Slurm sends its pre-timeout signal (``sbatch --signal=USR1@T``; submitit uses
USR2) before a job's time runs out, and SIGTERM when it preempts, requeues
(``scontrol requeue``) or cancels a job, SIGKILL ``KillWait`` seconds later.
:class:`Preemption` turns each of these signals into one request:

- inside :meth:`Preemption.deferred` (the whole of ``train_run``) the handler
  only records it: a fitting Trainer's :class:`PreemptionCheckpoint` saves the
  run's ``last.ckpt`` at the end of the current training step (what a periodic
  checkpoint holds, so resuming from it is exact) and raises :class:`Preempted`;
  a run past its last step just finishes, and its caller checks
  :attr:`Preemption.requested` before starting anything else;
- anywhere else (a sweep worker claiming a trial) :class:`Preempted` is raised
  at once: nothing trained there needs saving.

Lightning installs its own SIGTERM handler while fitting (it would stop the
loop at the next epoch end with no checkpoint), so the callback puts ours back
once fitting starts; Lightning restores the previous handlers at teardown.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

# SIGUSR1: Slurm's usual pre-timeout signal; SIGUSR2: submitit's; SIGTERM: preempt/requeue/cancel.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
PRE_TIMEOUT: frozenset[signal.Signals] = frozenset({signal.SIGUSR1, signal.SIGUSR2})


class Preempted(BaseException):
    """A preemption signal stopped the run (after checkpointing it, when it was fitting).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` does not
    swallow it; unlike KeyboardInterrupt, Lightning lets it through unchanged.
    """

    def __init__(self, signum: int, step: int | None = None) -> None:
        self.signum = signum
        self.step = step  # the checkpointed step, None when no Trainer was fitting
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}" if step is not None else name)

    @property
    def pre_timeout(self) -> bool:
        """True for the pre-timeout signals (the job should requeue itself)."""
        return self.signum in PRE_TIMEOUT


class Preemption:
    """The process-wide preemption request: its signal handlers and what they do now.

    ``deferring`` counts the code regions (a whole ``train_run``) that stop at
    their own safe point: inside them a signal is only recorded.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.installed = False
        self.deferring = 0

    def install(self, signals: Iterable[int] = SIGNALS) -> None:
        """Handle ``signals`` in this process (call from the main thread)."""
        for s in signals:
            signal.signal(s, self.handle)
        self.installed = True

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return  # a repeat (srun forwards the SIGTERM that slurmstepd sends too)
        self.signum = signum
        if not self.deferring:
            raise Preempted(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def reset(self) -> None:
        """Forget a handled request (tests, and a process that goes on after one)."""
        self.signum = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside: a signal is only recorded; the code checks :attr:`requested` itself."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1


PREEMPTION = Preemption()


class PreemptionCheckpoint(Callback):
    """Checkpoint and stop at the first step boundary after a preemption signal.

    ``path`` is the run's ``last.ckpt``. Only rank 0 (and single-process runs)
    receive Slurm's signal through :data:`PREEMPTION`; the decision is shared
    with every DDP rank so that they save and stop at the same step.
    """

    def __init__(self, path: Path, preemption: Preemption = PREEMPTION) -> None:
        self.path = Path(path)
        self.preemption = preemption

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.preemption.installed and threading.current_thread() is threading.main_thread():
            self.preemption.install()  # take SIGTERM back from Lightning's handler

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.preemption.requested, all=False):
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: the trial resumes
        raise Preempted(self.preemption.signum or signal.SIGTERM, trainer.global_step)
