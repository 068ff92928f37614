"""Gradients across depth, update sizes, sharpness against the learning rate, batch size
against the gradient noise scale."""

from __future__ import annotations

import math
import re

from bench.diagnoses.attention import EARLY_FRACTION
from bench.diagnoses.base import RunRecords, fmt, median, window
from bench.diagnoses.curves import loss_spikes
from bench.diagnoses.rule import Rule

# Ill-conditioned depth: the first block's gradient norm differs from the last's by 10x
# or more, at init or as the median of the early measurements. Xiong et al. 2020
# (Fig. 3) show pre-LN's per-layer gradient norms flat across depth at init and
# post-LN's growing toward the output; a whole order of magnitude across one stack is
# far outside what a pre-LN stack shows (quickstart, 400 steps: 1.2x at init, median
# 2.9x, at most 5.3x) and is what the quickstart's post-LN with N(0, 0.02) embeddings
# shows (block 0 at 15x block 1 at init, then 1/6x to 1/15x).
DEPTH_RATIO = 10.0
# Update size: the median over the steps after warmup of a block's per-step
# ||dtheta|| / ||theta||. The usual band for Adam-trained transformers is around 1e-3
# per step (Karpathy's rule of thumb; Wortsman et al. 2023, Sec. 3.4, relate the
# update RMS to the learning rate). Small models take larger relative steps (the
# quickstart's pre-LN run at lr 1e-2: 1.5e-2 per step at the peak learning rate, 1e-4
# at the end of its cosine decay, median 1e-3); a block far below 1e-5 barely moves.
# Only that side is read: on the corpus's tuning half (2026-12-07) lr 0.5 gave median
# ratios of 0.016-0.024 per step and lr 1.0 0.0045-0.0076, the healthy runs 0.0014-0.011
# and the batch plant at lr 1e-2 0.012-0.016 (Adam's step is about lr per weight, and
# the weights grow with it): a large ratio does not tell a high learning rate;
# sharpness_vs_lr and attention_logit_growth do.
UPDATE_LOW = 1e-5
# Sharpness against the learning rate (Cohen et al. 2021, edge of stability): gradient
# descent with step size lr is stable along a direction of curvature lambda only while
# lambda < 2 / lr (the scheduled lr at the measurement); above it training oscillates.
# Far below it (1000x) even at the sharpest measurement and the peak learning rate
# (train.lr), a step moves ~0.1% of the way the curvature allows: the learning rate
# could be much higher; judged only in runs that did not learn (a converged run sits in
# a flat minimum: pre-LN on the quickstart ended at lambda_max 0.06 against 2/lr = 2000
# with val/loss 0.0008). Measurements during warmup are not judged. Adam rescales the
# curvature it sees (Cohen et al. 2022), so this reads the raw Hessian as a rough guide.
# Set on the corpus's tuning half (2026-12-07); the rule read the last measurement
# against the scheduled lr, 100x below: at the end of the cosine schedule (lr/10) that
# read too small a step into every run that sat at chance (modular addition at lr 1e-2:
# lambda 12 against 2/lr = 2000 at the end). At the peak lr and the sharpest
# measurement runs that sat at chance at lr 1e-2 measured 1.5-124x (a flat landscape,
# not a small step), healthy runs 2.7-456x (copy, flat once solved) and lr 1e-6
# 6e5-1e6x: 1000x lies in the gap (about lr 1e-4 on these tasks).
EOS_FACTOR = 2.0
SHARPNESS_FAR_BELOW = 1000.0
# Batch size against the measured gradient noise scale B_simple (McCandlish et al.
# 2018): steps ~ S_min (1 + B_noise / B) and examples ~ E_min (1 + B / B_noise). At
# 10x either way a run needs ~11x the minimum steps (batch too small) or examples
# (batch too large). The quickstart (batch 32) measures B_simple 4-10 (pre-LN) and
# 16-68 (post-LN): within the band. A run that is unstable (a loss spike, divergence,
# or lambda_max above 2/lr) is not read for a batch too large: on the corpus's tuning
# half (2026-12-07) lr 0.5 measured B_simple -1.3 to 1.6 at batch 32, the
# gradient of an oscillating run rather than the batch a stable one needs (McCandlish
# et al. derive B_noise for a well-tuned step size).
NOISE_FACTOR = 10.0

_BLOCK = re.compile(r"^cond/grad_norm/(?P<stack>enc_block|block|dec_block)_(?P<i>\d+)$")
_UPDATE = re.compile(r"^cond/update_ratio/(?:enc_block|block|dec_block)_\d+$")


def _stacks(rec: RunRecords) -> dict[str, list[str]]:
    """Block gradient-norm keys per stack, in depth order."""
    out: dict[str, list[tuple[int, str]]] = {}
    for key in rec.keys("cond/grad_norm/"):
        m = _BLOCK.match(key)
        if m:
            out.setdefault(m["stack"], []).append((int(m["i"]), key))
    return {s: [k for _, k in sorted(v)] for s, v in out.items()}


class IllConditionedDepth(Rule):
    name = "ill_conditioned_depth"
    title = "ill-conditioned depth"
    reads = ("cond/grad_norm/{block}", "config: train.max_steps, model.norm_placement")
    paper = "Xiong et al. 2020 (On Layer Normalization in the Transformer Architecture)"
    advice = (
        "norm_placement=pre (or a warmup long enough for post-LN), and inputs of unit RMS "
        "to the first block (init=auto)"
    )

    def evidence(self, rec: RunRecords) -> str | None:
        end = EARLY_FRACTION * rec.total_steps
        for blocks in _stacks(rec).values():
            if len(blocks) < 2:
                continue
            first, last = dict(rec.series(blocks[0])), dict(rec.series(blocks[-1]))
            ratios = [
                (s, first[s] / last[s])
                for s, _ in window(rec.series(blocks[0]), end)
                if last.get(s, 0) > 0 and first[s] > 0
            ]
            if not ratios:
                continue
            typical = median(r for _, r in ratios)
            at_init = ratios[0][1] if ratios[0][0] == 0 else typical
            if max(at_init, 1 / at_init, typical, 1 / typical) < DEPTH_RATIO:
                continue
            first_name, last_name = (k.rsplit("/", 1)[1] for k in (blocks[0], blocks[-1]))
            start = "at init" if ratios[0][0] == 0 else f"at step {ratios[0][0]}"
            return (
                f"gradient at {first_name} is {_times(ratios[0][1])} {last_name} {start}; "
                f"{_times(typical)} as the median of steps 0-{int(end)}"
            )
        return None

    def advise(self, rec: RunRecords) -> str:
        if rec.config.get("model.norm_placement") == "pre":
            return "inputs of unit RMS to the first block (init=auto) or a lower learning rate"
        return self.advice


def _times(ratio: float) -> str:
    """``20x`` or ``1/20x`` for a ratio."""
    return f"{ratio:.3g}x" if ratio >= 1 else f"1/{1 / ratio:.3g}x"


class UpdateSize(Rule):
    name = "update_size"
    title = "updates too small"
    reads = ("cond/update_ratio/{block}", "config: train.warmup_steps, train.lr")
    paper = (
        "Wortsman et al. 2023 (Sec. 3.4, update size and the learning rate); the ~1e-3 "
        "update/weight rule of thumb"
    )
    advice = "a learning rate that puts every block's update/weight ratio above 1e-5"

    def evidence(self, rec: RunRecords) -> str | None:
        warmup = rec.config.get("train.warmup_steps") or 0
        found = []
        for key in rec.keys("cond/update_ratio/"):
            if not _UPDATE.match(key):
                continue
            typical = median(v for s, v in rec.series(key) if s >= warmup)
            if not math.isnan(typical) and typical < UPDATE_LOW:
                found.append((key.rsplit("/", 1)[1], typical))
        if not found:
            return None
        block, value = min(found, key=lambda f: f[1])
        return (
            f"{block}'s median update/weight ratio after warmup is {fmt(value)} per step, "
            f"below {UPDATE_LOW:g} (learning rate too low for it)"
        )

    def advise(self, rec: RunRecords) -> str:
        lr = rec.config.get("train.lr")
        return f"a higher learning rate than {lr:g}" if isinstance(lr, float) else self.advice


class SharpnessVsLearningRate(Rule):
    name = "sharpness_vs_lr"
    title = "sharpness against the learning rate"
    reads = ("hessian/lambda_max", "lr", "config: train.lr, train.warmup_steps")
    paper = (
        "Cohen et al. 2021 (Gradient Descent on Neural Networks Typically Occurs at the "
        "Edge of Stability)"
    )
    advice = "a learning rate nearer 2/lambda_max"

    def evidence(self, rec: RunRecords) -> str | None:
        judged = _judged_sharpness(rec)
        above = _past_edge(judged)
        if above is not None:
            step, lam, lr = above
            return (
                f"Hessian lambda_max {fmt(lam)} at step {step} is above 2/lr = "
                f"{fmt(EOS_FACTOR / lr)} (lr {lr:.3g}): past the edge of stability"
            )
        peak_lr = rec.config.get("train.lr")
        learned = (rec.summary.get("learning") or {}).get("status") == "learned"
        if judged and not learned and isinstance(peak_lr, float) and peak_lr > 0:
            # a converged minimum is flat: no sign of too small a step
            step, lam, _ = max(judged, key=lambda j: j[1])
            limit = EOS_FACTOR / peak_lr
            if lam * SHARPNESS_FAR_BELOW < limit:
                return (
                    f"the largest Hessian lambda_max after warmup, {fmt(lam)} at step {step}, "
                    f"is {limit / lam:.0f}x below 2/lr = {fmt(limit)} at the peak lr "
                    f"{peak_lr:.3g} in a run that did not learn: steps far smaller than the "
                    "curvature allows"
                )
        return None

    def advise(self, rec: RunRecords) -> str:
        ev = self.evidence(rec) or ""
        return "a lower learning rate" if "above" in ev else "a higher learning rate"


def _judged_sharpness(rec: RunRecords) -> list[tuple[int, float, float]]:
    """``(step, lambda_max, lr at that step)`` of each Hessian measurement after warmup."""
    lrs = rec.series("lr")
    peak_lr = rec.config.get("train.lr")
    warmup = rec.config.get("train.warmup_steps") or 0
    judged = []
    for step, lam in rec.series("hessian/lambda_max"):
        before = [v for s, v in lrs if s <= step]
        lr = before[-1] if before else peak_lr
        if step >= warmup and isinstance(lr, float) and lr > 0 and lam > 0:
            judged.append((step, lam, lr))
    return judged


def _past_edge(judged: list[tuple[int, float, float]]) -> tuple[int, float, float] | None:
    """The first measurement with lambda_max above 2/lr, if any."""
    return next((j for j in judged if j[1] > EOS_FACTOR / j[2]), None)


def unstable(rec: RunRecords) -> bool:
    """Did the run spike, diverge or step past the edge of stability?"""
    return bool(rec.non_finite_loss() or loss_spikes(rec) or _past_edge(_judged_sharpness(rec)))


class BatchVsNoiseScale(Rule):
    name = "batch_vs_noise_scale"
    title = "batch size against the gradient noise scale"
    reads = (
        "cond/noise_scale",
        "train/loss",
        "hessian/lambda_max",
        "lr",
        "config: task.batch_size, train.max_steps",
    )
    paper = "McCandlish et al. 2018 (An Empirical Model of Large-Batch Training)"
    advice = "a batch size nearer the measured noise scale"

    def evidence(self, rec: RunRecords) -> str | None:
        batch = rec.config.get("task.batch_size")
        if not isinstance(batch, int) or batch < 1:
            return None
        half = rec.total_steps / 2
        values = [v for s, v in rec.series("cond/noise_scale") if s >= half and v > 0]
        if len(values) < 2:
            return None
        b_noise = median(values)
        if b_noise > NOISE_FACTOR * batch:
            return (
                f"the gradient noise scale B_simple is {fmt(b_noise)} over the second half "
                f"(median), {b_noise / batch:.0f}x the batch size {batch}: batches this small "
                "take many more steps than needed"
            )
        if b_noise * NOISE_FACTOR < batch and not unstable(rec):
            return (
                f"the gradient noise scale B_simple is {fmt(b_noise)} over the second half "
                f"(median), 1/{batch / b_noise:.0f} of the batch size {batch}: most examples "
                "in a batch add nothing"
            )
        return None

    def advise(self, rec: RunRecords) -> str:
        ev = self.evidence(rec) or ""
        return (
            "a larger batch (fewer steps)"
            if "many more steps" in ev
            else "a smaller batch (more steps)"
        )
