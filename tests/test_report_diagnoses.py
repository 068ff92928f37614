"""``bench report`` lists each cell's diagnoses next to its learning status."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from report_helpers import make_sweep, standard_cells

from bench.diagnoses import Diagnosis
from bench.report import build_report
from bench.report.collect import load_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

UNIFORM = Diagnosis(
    "uniform_attention",
    "uniform attention",
    "attention in layer_0 stayed uniform for the first 160 steps (entropy 2.07 of max 2.08)",
    "Xiong et al. 2020",
    "init=auto",
)


def test_each_cell_lists_its_runs_diagnoses_next_to_its_learning_status(tmp_path):
    sweep = make_sweep(tmp_path, standard_cells())
    data = load_sweep(sweep)
    post_rope = [
        Path(r["run_dir"])
        for r in data.rows
        if r["cell"] == "norm_placement=post,pos_encoding=rope" and r["phase"] == "seed"
    ]
    assert len(post_rope) == 3
    for i, run_dir in enumerate(post_rope):
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["diagnoses"] = [UNIFORM.as_dict()] if i < 2 else []
        (run_dir / "summary.json").write_text(json.dumps(summary))
    out = build_report(sweep, tmp_path / "out")
    md = (out / "report.md").read_text()
    section = md.split("### Diagnoses", 1)[1].split("## Comparisons", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith("- **post / rope**"))
    assert "·" in line  # the cell's learning status follows its name
    assert (
        "  - uniform attention (2 of 3 runs): attention in layer_0 stayed uniform for the "
        "first 160 steps (entropy 2.07 of max 2.08); try init=auto" in section
    )
    # a cell whose runs record none, and whose records show none, says so
    assert "- **pre / rope** · " in section and "no diagnosis" in section
    html = (out / "index.html").read_text()
    assert "uniform attention (2 of 3 runs)" in html


def test_a_cell_whose_runs_learned_lists_watches_apart_and_says_no_diagnosis(tmp_path):
    sweep = make_sweep(tmp_path, standard_cells())
    data = load_sweep(sweep)
    pre_rope = [
        Path(r["run_dir"])
        for r in data.rows
        if r["cell"] == "norm_placement=pre,pos_encoding=rope" and r["phase"] == "seed"
    ]
    growth = Diagnosis(
        "attention_logit_growth",
        "attention logit growth",
        "the largest attention logit of layer_0 grew from 4.08 at step 0 to 106 at step 160",
        "Wortsman et al. 2023",
        "qk_norm=true",
        kind="watch",
        why="a risk only: the run learned and shows no symptom",
    )
    for run_dir in pre_rope:
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["diagnoses"] = [growth.as_dict()]
        (run_dir / "summary.json").write_text(json.dumps(summary))
    md = (build_report(sweep, tmp_path / "out") / "report.md").read_text()
    section = md.split("### Diagnoses", 1)[1].split("## Comparisons", 1)[0]
    cell = section.split("- **pre / rope**", 1)[1].split("\n- **", 1)[0]
    assert cell.splitlines()[0].endswith(": no diagnosis")
    assert "  - watches:" in cell
    assert f"attention logit growth ({len(pre_rope)} of {len(pre_rope)} runs)" in cell
    assert "the run learned" in cell and "try qk_norm" not in cell


# The corpus's post-LN plant (tools/diagnosis_corpus.py, post_ln_small_init): N(0, 0.02)
# weights and unscaled embeddings keep post-LN's attention uniform at the quickstart's lr
# and warmup, while pre-LN with the same init learns reversal in 140 steps.
PLANTED: dict = {
    "name": "planted",
    "base": {
        "task": {
            "name": "reverse",
            "seq_len": 6,
            "n_symbols": 12,
            "n_train": 2048,
            "n_val": 128,
            "eval_scales": [1],
            "batch_size": 32,
        },
        "model": {
            "d_model": 32,
            "n_layers": 2,
            "n_heads": 4,
            "max_len": 32,
            "init": "gpt2",
            "embed_scale": "none",
        },
        "train": {
            "lr": 1e-2,
            "warmup_steps": 20,
            "max_steps": 140,
            "val_every": 10,
            "log_every": 5,
            "threads": 1,
            "precision": "32-true",
        },
        "tracking": {"mode": "disabled"},
        "diagnostics": {
            "gradients_every": 10,
            "throughput": False,
            "attention_maps": False,
            "figures": False,
        },
    },
    "compare": {"model.norm_placement": ["pre", "post"]},
    "seeds": 1,
    "pruner": "none",
}


@pytest.mark.slow
def test_a_sweep_whose_one_cell_fails_for_a_planted_cause_names_it_in_the_report(tmp_path):
    import yaml

    from bench.api import sweep

    spec = tmp_path / "planted.yaml"
    spec.write_text(yaml.safe_dump(PLANTED))
    out = build_report(sweep(spec, workers=1, out=tmp_path / "sweep"), tmp_path / "report")
    md = (out / "report.md").read_text()
    section = md.split("### Diagnoses", 1)[1].split("## Comparisons", 1)[0]
    cells = {c.split("**", 1)[0]: c for c in section.split("\n- **")[1:]}
    assert cells["pre"].split("\n", 1)[0].endswith(": no diagnosis")  # learned, no advice
    post = cells["post"]
    head, found = post.split("\n", 1)
    assert "did not learn" in head or "collapsed" in head, head
    diagnoses = found.split("  - watches:", 1)[0]  # the lines before any watches
    for title, advice in (
        ("uniform attention (1 of 1 runs): attention in layer_0 stayed uniform", "init=auto"),
        ("ill-conditioned depth (1 of 1 runs): gradient at block_0", "norm_placement=pre"),
    ):
        line = next((x for x in diagnoses.splitlines() if title in x), None)
        assert line is not None, f"{title!r} not a diagnosis of post:\n{post}"
        assert f"; try {advice}" in line
