"""Readings of a run's loss curve shared by the loss rules and the symptom gate: spikes
and a plateau at chance (:mod:`bench.diagnoses.loss`, :mod:`bench.diagnoses.symptoms`)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.diagnoses.base import RunRecords, fmt, median
from bench.tasks.baseline import LOSS_MARGIN

# A loss spike: a logged train/loss at least twice the median of the 5 logged values
# before it, and higher by at least 20% of the task's chance loss (0.1 nats when no
# chance level is recorded). Single-batch losses of a run that trains smoothly vary by
# ~5-10% of chance from log to log; a doubling that large is a spike in the sense of
# Chowdhery et al. 2022 (PaLM, Sec. 5.1) and Zhai et al. 2023. Also a spike, whatever
# was logged before it: a train/loss at least twice what a model that knows nothing
# scores (ln(vocab size), summary.json's baseline). Added on the corpus's tuning half
# (2026-12-07): lr 0.5-1.0 without warmup took the loss to 6-61 by step 4, the first
# logged step, so no value before the jump was there to compare with; a run that
# trains smoothly starts near that loss (here 0.86-1.33x it) and falls.
SPIKE_RATIO = 2.0
SPIKE_CHANCE_FRACTION = 0.2
SPIKE_MIN_NATS = 0.1
SPIKE_CONTEXT = 5
# A plateau: val/loss within LOSS_MARGIN (10% of the chance loss, the margin a run must
# clear to count as learned, bench.tasks.baseline) of chance, or of its first logged
# value when that is above chance (a run that never moved: on the tuning half, lr 1e-6
# kept val/loss at its initial 3.9-4.2 against chance 2.13), for at least half the run.
PLATEAU_FRACTION = 0.5
# Output logit divergence (Wortsman et al. 2023, Sec. 3.2): the mean log-partition
# log Z drifts by more than 20 nats from its value at init. Softmax ignores a shift of
# all logits, so nothing in the loss holds log Z in place; z-loss (1e-4 log^2 Z,
# Chowdhery et al. 2022) does. A model that predicts confidently over a small vocabulary
# needs log Z only a few nats above its correct-token logit (|log Z| < ~15 on the probes);
# a drift of 20 is a shift of every logit, not confidence.
LOG_Z_DRIFT = 20.0


@dataclass(frozen=True)
class Spike:
    step: int
    before: float  # median of the logged losses just before, or the know-nothing loss
    value: float
    against: str = "the losses before it"  # or "a model that knows nothing"

    def words(self) -> str:
        """The spike in a sentence."""
        if self.against == KNOWS_NOTHING:
            return (
                f"train/loss reached {fmt(self.value)} at step {self.step}, over twice the "
                f"{fmt(self.before)} of {KNOWS_NOTHING}"
            )
        return f"train/loss jumped from {fmt(self.before)} to {fmt(self.value)} at step {self.step}"


KNOWS_NOTHING = "a model that knows nothing"


def loss_spikes(rec: RunRecords) -> list[Spike]:
    """The train/loss spikes of a run (see ``SPIKE_*``), in step order."""
    series = rec.series("train/loss")
    chance = rec.chance_loss()
    floor = SPIKE_CHANCE_FRACTION * chance if chance else SPIKE_MIN_NATS
    out = []
    uniform = rec.uniform_loss()
    for i, (step, value) in enumerate(series):
        if i >= SPIKE_CONTEXT:
            before = median(v for _, v in series[i - SPIKE_CONTEXT : i])
            if value >= SPIKE_RATIO * before and value - before >= floor:
                out.append(Spike(step, before, value))
                continue
        if uniform and value >= SPIKE_RATIO * uniform:
            out.append(Spike(step, uniform, value, KNOWS_NOTHING))
    return out


@dataclass(frozen=True)
class Plateau:
    """A stretch of validations at one level: ``chance`` or ``its first value``."""

    at: str
    level: float
    points: list[tuple[int, float]]


def chance_plateau(rec: RunRecords) -> Plateau | None:
    """The longest stretch of consecutive validations with val/loss within ``LOSS_MARGIN``
    of chance, or of the first logged val/loss when that is above chance by more than the
    margin (a run that never moved), if it spans ``PLATEAU_FRACTION`` of the run."""
    chance = rec.chance_loss()
    series = rec.series("val/loss")
    if not chance or not series:
        return None
    band = LOSS_MARGIN * chance
    levels = [("chance", chance)]
    if series[0][1] > chance + 2 * band:  # its own band clear of chance's
        levels.append(("its first value", series[0][1]))
    best: Plateau | None = None
    for at, level in levels:
        run: list[tuple[int, float]] = []
        for point in series:
            run = [*run, point] if abs(point[1] - level) <= band else []
            if len(run) >= 2 and (best is None or len(run) > len(best.points)):
                best = Plateau(at, level, run)
    if best is None or best.points[-1][0] - best.points[0][0] < PLATEAU_FRACTION * rec.total_steps:
        return None
    return best
