"""Chance levels of a task's metrics, and whether a run beat them.

Plain Python (no torch): the sweeps and the report import it to judge runs from
their records alone.

A task's *chance* predictor knows the output format and nothing about the
input: at trivially predictable positions (the end token of a fixed-length
answer) it is exactly right; at every other scored position it is uniform over
the tokens that can occur there. For text it is the unigram model (training
byte frequencies). Its token accuracy is the expected accuracy of a guess drawn
from that distribution, and its exact match that of a whole random guess. The
task's :meth:`~bench.tasks.base.BenchDataModule.baseline` returns these values
per eval length as a :class:`Baseline`; ``tests/test_task_baselines.py``
checks them against the validation data itself.

:func:`judge_learning` turns a run's best metrics and its baseline into one of
:data:`LEARNING_STATUSES` with a one-sentence reason. The decision rule and its
margins are fixed here, before any run they judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LEARNED, DID_NOT_LEARN, COLLAPSED = "learned", "did_not_learn", "collapsed"
LEARNING_STATUSES = (LEARNED, DID_NOT_LEARN, COLLAPSED)

# A run "learned" only if its best val/loss is at least 10% of the chance loss below
# chance. Seed-to-seed spread of a run stuck at chance is about 1-5% of the chance
# loss (e.g. post-LN on reverse: 2.11-2.21 against 2.21), so 10% is outside that
# noise, while any run that learned part of a task (e.g. the last answer positions
# only) clears it easily.
LOSS_MARGIN = 0.10
# ... and its non-trivial accuracy closes at least 10% of the gap between chance
# accuracy and 1 (reverse over 12 symbols: 0.083 -> at least 0.175). Loss alone can
# drop below chance by hedging (e.g. learning which symbols are frequent at a
# position) without a single more answer token right.
ACC_HEADROOM = 0.10
# Collapsed: the predictions at non-trivial positions hardly depend on the input.
# ``val/pred_diversity`` (bench.training.module.prediction_diversity) is the Jensen-Shannon
# divergence of the predicted distributions as a fraction of the entropy of their
# mean: 0 when every position gets the same distribution, 1 when each prediction
# is certain and they differ. Measured with 2-layer models (d_model 32-64): runs
# stuck at chance 0.000-0.012 (post-LN reverse, 12 symbols, lr 1e-3..1e-2, 200
# steps; recall on the end-token plateau; text on the unigram plateau), untrained
# 0.004; runs that learned 0.31 (text), 0.63 (reverse), 0.75 (copy).
COLLAPSE_DIVERSITY = 0.05
# ... and training moved the model away from knowing nothing: its best loss closed
# at least a quarter of the gap between the uniform-over-vocabulary loss (what a
# freshly initialised model with small logits scores) and chance. A run whose
# learning rate is too small to move at all is "did not learn", not "collapsed".
COLLAPSE_PROGRESS = 0.25


@dataclass(frozen=True)
class Chance:
    """The chance predictor's expected metrics at one eval length."""

    loss: float  # mean token cross-entropy over every scored position (nats)
    acc: float  # token accuracy over every scored position
    acc_nontrivial: float  # token accuracy over the non-trivial scored positions
    exact_match: float | None  # whole-answer exact match; None if the task has none


def uniform_answer(n_answer: int, n_possible: int, n_trivial: int = 1) -> Chance:
    """``n_answer`` positions uniform over ``n_possible`` tokens plus ``n_trivial`` known ones.

    E.g. reverse with 12 symbols at size 8: loss ``8 ln 12 / 9 = 2.21``, accuracy
    ``(8/12 + 1) / 9``, non-trivial accuracy ``1/12``, exact match ``12**-8``.
    """
    total = n_answer + n_trivial
    return Chance(
        loss=n_answer * math.log(n_possible) / total,
        acc=(n_answer / n_possible + n_trivial) / total,
        acc_nontrivial=1.0 / n_possible,
        exact_match=float(n_possible) ** -n_answer,
    )


@dataclass(frozen=True)
class Baseline:
    """A task's chance levels, one :class:`Chance` per eval length (first = training length).

    ``description`` says what chance is in words (it goes into the learning
    verdict); ``trivial`` names the scored positions that are trivially
    predictable (the collate step marks them in ``batch["trivial"]``);
    ``uniform_loss`` is ``ln(vocab_size)``, the loss of a predictor uniform over
    the whole vocabulary, which is what an untrained model scores.
    """

    description: str
    trivial: str
    lengths: tuple[int, ...]
    chances: tuple[Chance, ...]
    uniform_loss: float

    def __post_init__(self) -> None:
        if not self.lengths or len(self.lengths) != len(self.chances):
            raise ValueError("a Baseline needs one Chance per eval length")

    @property
    def loss(self) -> float:
        """Chance ``val/loss`` at the training length (what a pruner compares against)."""
        return self.chances[0].loss

    def as_dict(self) -> dict[str, float | None]:
        """Flat metric keys as logged: ``val/loss``, ``val/loss@{L}``, ... (None: no such metric).

        Also ``uniform/val/loss``: the uniform-over-vocabulary loss.
        """
        out: dict[str, float | None] = {}
        for i, (length, chance) in enumerate(zip(self.lengths, self.chances, strict=True)):
            values = {
                "loss": chance.loss,
                "acc": chance.acc,
                "acc_nontrivial": chance.acc_nontrivial,
                "exact_match": chance.exact_match,
            }
            if i == 0:
                out.update({f"val/{k}": v for k, v in values.items()})
            out.update({f"val/{k}@{length}": v for k, v in values.items()})
        out["uniform/val/loss"] = self.uniform_loss
        return out


def baseline_from_lengths(
    description: str,
    trivial: str,
    lengths: Iterable[int],
    chance_at: Mapping[int, Chance],
    vocab_size: int,
) -> Baseline:
    """A :class:`Baseline` from each eval length's :class:`Chance`."""
    lengths = tuple(lengths)
    return Baseline(
        description, trivial, lengths, tuple(chance_at[n] for n in lengths), math.log(vocab_size)
    )


# ----------------------------------------------------------------------------- judging


def _value(metrics: Mapping[str, float], key: str) -> float | None:
    """The value at the run's best validation (``best/<key>``), else the last one."""
    for k in (f"best/{key}", key):
        v = metrics.get(k)
        if isinstance(v, int | float) and math.isfinite(v):
            return float(v)
    return None


def judge_learning(
    baseline: Mapping[str, float | None],
    metrics: Mapping[str, float],
    description: str = "",
) -> tuple[str, str]:
    """``(status, reason)`` of a finished run: learned, did_not_learn or collapsed.

    ``baseline`` is :meth:`Baseline.as_dict` (as in ``summary.json``); ``metrics``
    a run's metrics, where ``best/val/...`` (the validation with the lowest
    val/loss) take precedence over the last ``val/...``. ``description`` (what
    chance is, in words) is quoted in the reason. The rule, with the constants
    above: learned if the best val/loss is ``LOSS_MARGIN`` below chance and the
    non-trivial accuracy at that validation closes ``ACC_HEADROOM`` of its gap
    to 1; otherwise collapsed if the predictions hardly depend on the input
    (``val/pred_diversity < COLLAPSE_DIVERSITY``) although training moved the
    loss ``COLLAPSE_PROGRESS`` of the way from uniform toward chance; otherwise
    did not learn.
    """
    chance = baseline.get("val/loss")
    if chance is None or not math.isfinite(chance):
        raise ValueError("baseline has no finite 'val/loss'")
    what = f" ({description})" if description else ""
    loss = _value(metrics, "val/loss")
    if loss is None:
        return DID_NOT_LEARN, f"no finite val/loss was recorded (chance {chance:.3g}{what})"

    acc = _accuracy(baseline, metrics)
    loss_needed = (1 - LOSS_MARGIN) * chance
    beats_loss = loss <= loss_needed
    beats_acc = acc is None or acc.value >= acc.needed
    if beats_loss and beats_acc:
        acc_part = (
            "" if acc is None else f" and {acc.name} {acc.value:.3g} beats chance {acc.chance:.3g}"
        )
        below = 1 - loss / chance
        return (
            LEARNED,
            f"best val/loss {loss:.3g} is {below:.0%} below chance {chance:.3g}{acc_part}",
        )

    diversity = _value(metrics, "val/pred_diversity")
    uniform = baseline.get("uniform/val/loss")
    moved = uniform is None or loss <= uniform - COLLAPSE_PROGRESS * (uniform - chance)
    if diversity is not None and diversity < COLLAPSE_DIVERSITY and moved:
        return COLLAPSED, (
            f"predictions hardly depend on the input (val/pred_diversity {diversity:.3f} < "
            f"{COLLAPSE_DIVERSITY}) at best val/loss {loss:.3g} against chance {chance:.3g}{what}"
        )
    if not beats_loss:
        how = "not below" if loss >= chance else f"within {LOSS_MARGIN:.0%} of"
        return DID_NOT_LEARN, f"best val/loss {loss:.3g} is {how} chance {chance:.3g}{what}"
    assert acc is not None  # beats_loss and not beats_acc
    return DID_NOT_LEARN, (
        f"best val/loss {loss:.3g} is {1 - loss / chance:.0%} below chance {chance:.3g} but "
        f"{acc.name} {acc.value:.3g} does not reach {acc.needed:.3g} (chance {acc.chance:.3g} "
        f"plus {ACC_HEADROOM:.0%} of the gap to 1)"
    )


@dataclass(frozen=True)
class _Accuracy:
    name: str
    value: float
    chance: float

    @property
    def needed(self) -> float:
        return self.chance + ACC_HEADROOM * (1 - self.chance)


def _accuracy(
    baseline: Mapping[str, float | None], metrics: Mapping[str, float]
) -> _Accuracy | None:
    """Non-trivial accuracy and its chance; plain val/acc for runs recorded without it."""
    for key, name in (("val/acc_nontrivial", "non-trivial accuracy"), ("val/acc", "val/acc")):
        chance, value = baseline.get(key), _value(metrics, key)
        if chance is not None and value is not None:
            return _Accuracy(name, value, chance)
    return None


def chance_level(datamodule: Any, metric: str) -> float | None:
    """The task's chance value of ``metric`` (None when the task does not know it)."""
    fn = getattr(datamodule, "baseline", None)
    if fn is None:
        return None
    value = fn().as_dict().get(metric)  # a Baseline
    return float(value) if value is not None and math.isfinite(float(value)) else None
