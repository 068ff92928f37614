"""The symptom gate: does a run show that it trained badly?

A rule that names a *cause* of bad training (uniform attention, logit growth, a batch
far above the noise scale, ...) reads measurements that also occur in runs that train
well: a reversal solved exactly needs one-hot attention, and one-hot attention needs
large logits (issue 29). Such a finding is a *diagnosis*, with advice, only when the
run shows a symptom; otherwise it is a *watch*: a risk, with no advice to change a run
that learned. The symptoms, each computable from :class:`RunRecords` alone:

- **diverged**: ``status`` diverged or a non-finite ``train/loss``;
- **did not learn**: ``summary.json``'s learning verdict (:func:`bench.tasks.baseline.
  judge_learning`) is ``did_not_learn`` or ``collapsed``; a run without a verdict (it
  stopped early, or predates the verdict) did not learn when its last ``val/loss`` is not
  ``LOSS_MARGIN`` (10%) of the chance loss below chance (``summary.json`` ``baseline``);
- **plateau at chance**: ``val/loss`` within 10% of chance (or of its first value, when
  that is above chance: a run that never moved) for at least half the planned steps
  (:func:`bench.diagnoses.curves.chance_plateau`), even if it learned later: it learned
  slowly;
- **unrecovered loss spike**: a ``train/loss`` spike (:func:`bench.diagnoses.curves.
  loss_spikes`) after which the last logged ``train/loss`` is still above the loss
  before the spike by the spike's own floor (20% of chance). A spike the run recovered
  from is no symptom (the run learned anyway).

A run with no recorded loss, verdict or chance level shows no symptom: the gate
gives advice only when the records show a run went wrong.
"""

from __future__ import annotations

from bench.diagnoses.base import RunRecords, fmt
from bench.diagnoses.curves import (
    SPIKE_CHANCE_FRACTION,
    SPIKE_MIN_NATS,
    chance_plateau,
    loss_spikes,
)
from bench.tasks.baseline import COLLAPSED, DID_NOT_LEARN, LEARNED, LOSS_MARGIN


def symptom(rec: RunRecords) -> str | None:
    """The run's first symptom of bad training in words, or None when it shows none."""
    if rec.non_finite_loss():
        return "the run diverged"
    verdict = (rec.summary.get("learning") or {}).get("status")
    chance = rec.chance_loss()
    if verdict in (DID_NOT_LEARN, COLLAPSED):
        return f"the run did not learn ({verdict.replace('_', ' ')})"
    val = rec.series("val/loss")
    if verdict != LEARNED and chance and val and val[-1][1] > (1 - LOSS_MARGIN) * chance:
        return (
            f"the run did not learn (last val/loss {fmt(val[-1][1])} is not "
            f"{LOSS_MARGIN:.0%} below chance {fmt(chance)})"
        )
    plateau = chance_plateau(rec)
    if plateau is not None:
        return (
            f"val/loss sat at {plateau.at} from step {plateau.points[0][0]} to "
            f"{plateau.points[-1][0]} (it learned slowly, if at all)"
        )
    loss = rec.series("train/loss")
    floor = SPIKE_CHANCE_FRACTION * chance if chance else SPIKE_MIN_NATS
    for spike in loss_spikes(rec):
        if loss and loss[-1][1] > spike.before + floor:
            return (
                f"train/loss spiked at step {spike.step} and ended at {fmt(loss[-1][1])}, "
                f"above the {fmt(spike.before)} before it"
            )
    return None


def no_symptom(rec: RunRecords) -> str:
    """Why a finding is only a watch: what the records say about the run."""
    if (rec.summary.get("learning") or {}).get("status") == LEARNED:
        return "a risk only: the run learned and shows no symptom"
    return "a risk only: the run shows no symptom of bad training in its records"
