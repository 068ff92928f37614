"""Each rule's precision and recall, measured on the held-out half of a labelled corpus.

The corpus (``tools/diagnosis_corpus.py``) trains tiny runs from configurations with a
planted cause and healthy ones; ``tools/diagnosis_eval.py`` prints the table below
(rule, planted runs, fired, precision, recall, false alarms on healthy runs) from its
held-out seeds; docs/diagnoses.md shows it with the corpus's seeds, size and generation
time. A rule below ``MIN_PRECISION`` or ``MIN_RECALL`` there, or one never measured
(no planted run failed in the held-out half), is *demoted*: it is shown as a watch
with its figures, never as a diagnosis with advice. The figures are copied from the
tool's output (``tests/test_diagnosis_measured.py`` checks they agree with the docs).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_PRECISION = 0.9
MIN_RECALL = 0.8


@dataclass(frozen=True)
class Measured:
    """One rule on the held-out half: runs where its cause was planted and the run failed
    (``planted``), runs it fired on as a diagnosis (``fired``), the correct ones among them
    (``hits``) and its diagnoses on healthy runs that learned (``healthy_alarms``)."""

    planted: int
    fired: int
    hits: int
    healthy_alarms: int

    @property
    def precision(self) -> float | None:
        return self.hits / self.fired if self.fired else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.planted if self.planted else None

    def passes(self) -> bool:
        p, r = self.precision, self.recall
        return p is not None and r is not None and p >= MIN_PRECISION and r >= MIN_RECALL

    def figures(self) -> str:
        def show(x: float | None, n: int, d: int) -> str:
            return f"{x:.2f} ({n}/{d})" if x is not None else "not measured (0 runs)"

        return (
            f"precision {show(self.precision, self.hits, self.fired)}, "
            f"recall {show(self.recall, self.hits, self.planted)}"
        )


# rule -> its figures on the held-out half, seeds 4-7 (tools/diagnosis_eval.py's output,
# 2026-12-07; docs/diagnoses.md).
MEASURED: dict[str, Measured] = {
    "uniform_attention": Measured(planted=3, fired=3, hits=3, healthy_alarms=0),
    "ill_conditioned_depth": Measured(planted=3, fired=3, hits=3, healthy_alarms=0),
    "entropy_collapse": Measured(planted=8, fired=8, hits=8, healthy_alarms=0),
    "attention_logit_growth": Measured(planted=8, fired=8, hits=8, healthy_alarms=0),
    "output_logit_divergence": Measured(planted=4, fired=7, hits=4, healthy_alarms=0),
    "update_size": Measured(planted=4, fired=4, hits=4, healthy_alarms=0),
    "sharpness_vs_lr": Measured(planted=12, fired=12, hits=12, healthy_alarms=0),
    "batch_vs_noise_scale": Measured(planted=4, fired=4, hits=4, healthy_alarms=0),
    "loss_spikes": Measured(planted=8, fired=8, hits=8, healthy_alarms=0),
    "chance_plateau": Measured(planted=11, fired=12, hits=11, healthy_alarms=1),
}


def demotion(rule: str) -> str | None:
    """Why ``rule`` is shown as a watch only (its figures), or None if it passes."""
    m = MEASURED.get(rule)
    if m is None:
        return "its precision and recall were never measured (docs/diagnoses.md)"
    if m.passes():
        return None
    return (
        f"measured on the held-out corpus at {m.figures()}, below the bar "
        f"(precision {MIN_PRECISION}, recall {MIN_RECALL}; docs/diagnoses.md)"
    )
