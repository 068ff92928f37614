"""Attention that does not form, that collapses, or whose logits grow without bound."""

from __future__ import annotations

from bench.config import ConfigError, ModelConfig
from bench.diagnoses.base import (
    RunRecords,
    fmt,
    layer_of,
    window,
)
from bench.diagnoses.curves import loss_spikes
from bench.diagnoses.rule import Rule
from bench.tasks.baseline import LOSS_MARGIN

# "The first part of training": the first 40% of the planned steps. The quickstart's
# post-LN with N(0, 0.02) embeddings kept uniform attention for 150 of 400 steps
# (issue 16); a run whose attention forms at all does so within its warmup and the
# first stretch after it (pre-LN on the quickstart: by step 40 of 400).
EARLY_FRACTION = 0.4
# "Near its maximum": at least 97% of the entropy of uniform attention over the allowed
# keys. Post-LN with N(0, 0.02) embeddings on the quickstart sits at 100% (1.971 of
# 1.971 nats) for 180 steps and more; pre-LN with unit-RMS inputs (init=auto) starts at
# 87% (1.709) and is at 55% by step 40.
UNIFORM_FRACTION = 0.97
# Entropy collapse (Zhai et al. 2023): a head whose mean entropy falls below 0.1 nats
# puts > 98% of its weight on one key for every query. Sharp heads are also what many
# solved tasks need (copy attends to one position: 0.01-0.03 nats once solved), so the
# rule fires only when the collapse comes with a loss spike or divergence, as in the
# paper, or before the run had learned anything (val/loss not LOSS_MARGIN below chance
# at the validation nearest the collapse): a head that turns one-hot before the loss
# moves is not attending to what the task needs. The second case was added on the
# corpus's tuning half (2026-12-07): at lr 0.5 and 1.0 these tiny models did not spike;
# their heads fell below 0.007 nats within 10-20 steps, with val/loss at 12-75 against
# chance 2.1-3.6, while the healthy copy runs' heads fell below 0.1 at steps 40-50 with
# val/loss already at 0.17-0.59.
COLLAPSE_NATS = 0.1
# Attention logit growth (Wortsman et al. 2023, Dehghani et al. 2023): the largest
# |q.k|/sqrt(d) grows by at least 10x over training AND reaches 100 or more. At 100 the
# softmax gives the runner-up key e^-100 of the weight: its gradient vanishes (the
# "attention logit growth" instability); healthy small runs stay in single or low
# double digits (quickstart pre-LN: 4 at init, at most 29), the unstable runs of those
# papers reach 1e3-1e4.
LOGIT_GROWTH = 10.0
LOGIT_LARGE = 100.0


def _first_block_advice(rec: RunRecords) -> str | None:
    """The init warning of the run's model config, if it has one."""
    fields = {k.removeprefix("model."): v for k, v in rec.config.items() if k.startswith("model.")}
    try:
        warning = ModelConfig(**fields).init_warning() if fields else None
    except (ConfigError, ValueError):
        return None
    return warning


class UniformAttention(Rule):
    name = "uniform_attention"
    title = "uniform attention"
    reads = (
        "cond/attn_entropy/{layer}",
        "cond/attn_entropy_uniform/{layer}",
        "config: train.max_steps, train.lr, model.*",
    )
    paper = (
        "Xiong et al. 2020 (On Layer Normalization in the Transformer Architecture); "
        "issue 9 of this project: post-LN attention logits scale with the input RMS squared"
    )
    advice = (
        "larger inputs to the first block (init=auto, or embed_scale=sqrt_d for N(0, 0.02) "
        "embeddings) or a larger learning rate"
    )

    def evidence(self, rec: RunRecords) -> str | None:
        end = EARLY_FRACTION * rec.total_steps
        for key in rec.keys("cond/attn_entropy/"):
            layer = layer_of(key)
            points = window(rec.series(key), end)
            uniform = dict(rec.series(f"cond/attn_entropy_uniform/{layer}"))
            pairs = [(s, v, uniform[s]) for s, v in points if uniform.get(s, 0) > 0]
            if len(pairs) < 2 or pairs[-1][0] == 0:
                continue  # "stays" needs a measurement after init
            if not all(v >= UNIFORM_FRACTION * u for _, v, u in pairs):
                continue
            # how long it stayed: the measurements near the maximum from step 0 on
            stretch = []
            for s, v in rec.series(key):
                if uniform.get(s, 0) <= 0 or v < UNIFORM_FRACTION * uniform[s]:
                    break
                stretch.append((s, v, uniform[s]))
            lowest = min(stretch, key=lambda p: p[1] / p[2])
            return (
                f"attention in {layer} stayed uniform for the first {stretch[-1][0]} steps "
                f"(entropy {lowest[1]:.3g} of max {lowest[2]:.3g} at its lowest, "
                f"step {lowest[0]})"
            )
        return None

    def advise(self, rec: RunRecords) -> str:
        warning = _first_block_advice(rec)
        lr = rec.config.get("train.lr")
        rate = f" (train.lr={lr:g})" if isinstance(lr, float) else ""
        if warning:
            return f"init=auto ({warning})"
        return self.advice + rate


class EntropyCollapse(Rule):
    name = "entropy_collapse"
    title = "attention entropy collapse"
    reads = (
        "cond/attn_entropy_min/{layer}",
        "train/loss",
        "val/loss",
        "status",
        "summary: baseline",
    )
    paper = (
        "Zhai et al. 2023 (Stabilizing Transformer Training by Preventing Attention "
        "Entropy Collapse)"
    )
    advice = "qk_norm=true, a lower learning rate or a longer warmup (sigma-reparam in the paper)"

    def evidence(self, rec: RunRecords) -> str | None:
        spikes = loss_spikes(rec)
        diverged = rec.non_finite_loss()
        val = rec.series("val/loss")
        chance = rec.chance_loss()
        for key in rec.keys("cond/attn_entropy_min/"):
            low = [(s, v) for s, v in rec.series(key) if v < COLLAPSE_NATS]
            if not low:
                continue
            start = low[0][0]
            after = [sp for sp in spikes if sp.step >= start]
            nearest = min(val, key=lambda p: abs(p[0] - start)) if val else None
            unlearned = (
                nearest is not None
                and chance is not None
                and nearest[1] > (1 - LOSS_MARGIN) * chance
            )
            if after:
                what = after[0].words()
            elif diverged:
                what = "training diverged (non-finite loss)"
            elif unlearned and nearest is not None:
                what = (
                    f"val/loss was {fmt(nearest[1])} at step {nearest[0]}, not below chance "
                    f"{fmt(chance or 0)}: the head turned one-hot before the run learned anything"
                )
            else:
                continue
            return (
                f"a head of {layer_of(key)} fell to entropy {fmt(low[0][1])} nats at step "
                f"{start} (below {COLLAPSE_NATS}), and {what}"
            )
        return None


class AttentionLogitGrowth(Rule):
    name = "attention_logit_growth"
    title = "attention logit growth"
    reads = ("cond/attn_logit_max/{layer}",)
    paper = (
        "Wortsman et al. 2023 (Small-scale proxies for large-scale Transformer training "
        "instabilities); Dehghani et al. 2023 (Scaling Vision Transformers to 22B parameters)"
    )
    advice = "qk_norm=true (both papers), a lower learning rate or more weight decay"

    def evidence(self, rec: RunRecords) -> str | None:
        for key in rec.keys("cond/attn_logit_max/"):
            series = rec.series(key)
            if len(series) < 2:
                continue
            (s0, first), (s1, peak) = series[0], max(series, key=lambda p: p[1])
            if peak >= LOGIT_LARGE and first > 0 and peak >= LOGIT_GROWTH * first:
                return (
                    f"the largest attention logit of {layer_of(key)} grew from {fmt(first)} "
                    f"at step {s0} to {fmt(peak)} at step {s1} ({peak / first:.0f}x)"
                )
        return None
