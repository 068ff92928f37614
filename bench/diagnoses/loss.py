"""The loss and the output logits: spikes, plateaus at chance, drifting log-partition."""

from __future__ import annotations

import math

from bench.diagnoses.base import RunRecords, fmt
from bench.diagnoses.curves import (
    LOG_Z_DRIFT,
    chance_plateau,
    loss_spikes,
)
from bench.diagnoses.rule import Rule


class LossSpikes(Rule):
    name = "loss_spikes"
    title = "loss spikes"
    reads = ("train/loss", "status", "summary: baseline")
    paper = "Chowdhery et al. 2022 (PaLM, Sec. 5.1); Wortsman et al. 2023"
    advice = "a lower learning rate, a longer warmup or qk_norm=true"

    def evidence(self, rec: RunRecords) -> str | None:
        spikes = loss_spikes(rec)
        if spikes:
            first = spikes[0]
            more = f" ({len(spikes)} spikes in all)" if len(spikes) > 1 else ""
            return f"{first.words()}{more}"
        if rec.non_finite_loss():
            return "train/loss became non-finite (the run diverged)"
        return None


class ChancePlateau(Rule):
    name = "chance_plateau"
    title = "plateau at chance"
    reads = ("val/loss", "summary: baseline", "config: train.max_steps")
    paper = "the task's chance level (bench.tasks.baseline); Power et al. 2022 (grokking)"
    advice = (
        "a different learning rate (this one moved nothing that depends on the input), "
        "more steps, or a configuration whose attention forms (see the other diagnoses)"
    )

    def evidence(self, rec: RunRecords) -> str | None:
        best = chance_plateau(rec)
        if best is None:
            return None
        values = [v for _, v in best.points]
        where = (
            f"chance ({fmt(best.level)})"
            if best.at == "chance"
            else f"its first value ({fmt(best.level)}, above chance {fmt(rec.chance_loss() or 0)})"
        )
        return (
            f"val/loss stayed at {where} from step {best.points[0][0]} to "
            f"{best.points[-1][0]} ({fmt(min(values))}-{fmt(max(values))})"
        )


class OutputLogitDivergence(Rule):
    name = "output_logit_divergence"
    title = "output logit divergence"
    reads = ("cond/log_z_mean", "cond/output_logit_mean", "cond/output_logit_max")
    paper = (
        "Wortsman et al. 2023 (Small-scale proxies for large-scale Transformer training "
        "instabilities, Sec. 3.2); z-loss from Chowdhery et al. 2022"
    )
    advice = "a z-loss (1e-4 log^2 Z), more weight decay or a lower learning rate"

    def evidence(self, rec: RunRecords) -> str | None:
        log_z = rec.series("cond/log_z_mean")
        if len(log_z) < 2:
            return None
        s0, z0 = log_z[0]
        s1, z1 = max(log_z, key=lambda p: abs(p[1] - z0))
        if abs(z1 - z0) < LOG_Z_DRIFT or not math.isfinite(z1):
            return None
        mean = dict(rec.series("cond/output_logit_mean"))
        peak = dict(rec.series("cond/output_logit_max"))
        extra = ""
        if s1 in mean and s1 in peak:
            extra = f"; mean logit {fmt(mean[s1])}, max {fmt(peak[s1])}"
        return f"mean log Z drifted from {fmt(z0)} at step {s0} to {fmt(z1)} at step {s1}{extra}"
