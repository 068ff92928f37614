"""Pruning a sweep trial: Optuna's pruners in search mode, the chance rule in compare mode.

The callback is the only Lightning piece of a sweep's trial bookkeeping, so it
lives apart from :mod:`bench.sweeps.objective`'s pure parts and from
:mod:`bench.sweeps.recovery.retry`, which the launcher imports without loading Lightning.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import lightning as L
import optuna

from bench.tasks.baseline import chance_level

if TYPE_CHECKING:
    from bench.config import RunConfig


# Compare mode prunes a trial only when it is clearly hopeless: its objective is still
# worse than the task's chance level once warm-up is over AND half of its steps are done.
# Half, not warm-up alone: a small learning rate is slow, not hopeless, and stopping it
# early would let the pruner decide which learning rate a cell gets.
CHANCE_PRUNE_AFTER = 0.5


class PruningCallback(L.Callback):
    """Report the objective at each validation; stop the Trainer when the trial is pruned.

    ``rule="optuna"`` asks the study's pruner (search mode: hyperband or median).
    ``rule="chance"`` (compare mode) never looks at other trials: it stops a trial
    whose objective is still on the wrong side of the task's chance level after
    warm-up and :data:`CHANCE_PRUNE_AFTER` of its steps.

    Only rank 0 talks to Optuna (``trial`` is None on other DDP ranks); the
    decision is shared with every rank so they stop together.
    """

    def __init__(
        self,
        trial: optuna.Trial | None,
        metric: str,
        rule: str = "optuna",
        minimize: bool = True,
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.rule = rule
        self.minimize = minimize
        self.pruned_at: int | None = None
        self.reason = ""

    def _hopeless(self, trainer: L.Trainer, pl_module: L.LightningModule, value: float) -> bool:
        cfg = cast("RunConfig", pl_module.cfg).train  # the BenchModule's config
        after = max(cfg.warmup_steps, CHANCE_PRUNE_AFTER * trainer.max_steps)
        if trainer.global_step < after:
            return False
        # Lightning sets trainer.datamodule when fitting starts (it declares no such attribute).
        chance = chance_level(getattr(trainer, "datamodule", None), self.metric)
        if chance is None:
            return False
        worse = value > chance if self.minimize else value < chance
        if worse:
            self.reason = (
                f"{self.metric} {value:.4g} still worse than chance {chance:.4g} at step "
                f"{trainer.global_step} of {trainer.max_steps}"
            )
        return worse

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.metric)
        if self.trial is not None and value is not None and math.isfinite(float(value)):
            self.trial.report(float(value), step=trainer.global_step)
            if self.rule == "chance":
                prune = self._hopeless(trainer, pl_module, float(value))
            else:
                prune = self.trial.should_prune()
        if trainer.strategy.reduce_boolean_decision(prune, all=False):
            self.pruned_at = trainer.global_step
            trainer.should_stop = True
