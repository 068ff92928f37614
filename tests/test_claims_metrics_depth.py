"""Claim metrics across depth: the log-log slope over an axis, the first logged step
and the last layer's key (claim xiong-init-gradient: Xiong et al. 2020, Theorem 1)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bench.claims.metrics import loglog_slope, run_samples
from bench.claims.spec import MetricSpec
from tests.test_claims_metrics import row, sweep

SLOPE = MetricSpec(key="g", over="n_layers", reduce="loglog_slope")


def test_loglog_slope_is_the_least_squares_slope_of_the_logs():
    # log x = ln2 * (1, 2, 3), log y = (0, ln 3, ln 2): centred x = ln2 * (-1, 0, 1), so
    # slope = ln2 * (ln 2 - 0) / (2 ln2^2) = 1/2
    assert loglog_slope([2, 4, 8], [1, 3, 2]) == pytest.approx(0.5)
    assert loglog_slope([2, 4, 8, 16], [3 * x**-0.5 for x in (2, 4, 8, 16)]) == pytest.approx(-0.5)


def test_loglog_slope_is_formed_per_group_and_seed_over_the_axis():
    power = {"pre": -0.5, "post": 0.0}
    rows = [
        row(f"ln={ln},n_layers={n}", seed, **{"g": (1 + seed) * n ** power[ln]})
        for ln in power
        for seed in (1, 2)
        for n in (2, 4, 8)
    ]
    s = run_samples(sweep(rows, ["ln", "n_layers"]), "m", SLOPE)
    got = sorted((x.axes["ln"], x.seed, round(x.value, 9)) for x in s.values)
    assert got == [("post", 1, 0.0), ("post", 2, 0.0), ("pre", 1, -0.5), ("pre", 2, -0.5)]
    assert all("n_layers" not in x.axes for x in s.values)


def test_a_seed_missing_a_depth_is_left_out_of_the_slope():
    rows = [row("ln=pre,n_layers=2", 1, g=1.0), row("ln=pre,n_layers=8", 1, g=0.5)]
    rows += [row("ln=pre,n_layers=2", 2, g=1.0)]
    s = run_samples(sweep(rows, ["ln", "n_layers"]), "m", SLOPE)
    assert [x.seed for x in s.values] == [1]
    assert s.values[0].value == pytest.approx(math.log(0.5) / math.log(4))
    assert any("seed 2: no run at n_layers=[8.0]; seed left out" in n for n in s.notes)


def _metrics_csv(run: Path, rows: list[dict[str, object]]) -> str:
    run.mkdir()
    keys = sorted({k for r in rows for k in r if k != "step"})
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", *keys])
        w.writeheader()
        w.writerows(rows)
    return str(run)


def test_last_reads_the_highest_numbered_block_and_first_the_first_step(tmp_path):
    key = "cond/ffn_out_grad_norm/block_{}"
    run = _metrics_csv(
        tmp_path / "run",
        [
            {"step": 0, key.format(2): 5.0, key.format(10): 3.0, key.format(9): 7.0},
            {"step": 20, key.format(2): 50.0, key.format(10): 30.0, key.format(9): 70.0},
        ],
    )
    r = {**row("pe=a", 1), "run_dir": run}
    first = MetricSpec(key="cond/ffn_out_grad_norm/block_{last}", steps="first")
    last = MetricSpec(key="cond/ffn_out_grad_norm/block_{last}", steps="last")
    assert run_samples(sweep([r], ["pe"]), "m", first).values[0].value == 3.0  # block 10, not 9
    assert run_samples(sweep([r], ["pe"]), "m", last).values[0].value == 30.0
    every = MetricSpec(key="cond/ffn_out_grad_norm/*", steps="first")
    assert run_samples(sweep([r], ["pe"]), "m", every).values[0].value == 7.0  # max over blocks


def test_a_run_without_the_last_key_is_left_out_and_named(tmp_path):
    run = _metrics_csv(tmp_path / "run", [{"step": 0, "cond/other": 1.0}])
    spec = MetricSpec(key="cond/ffn_out_grad_norm/block_{last}", steps="first")
    s = run_samples(sweep([{**row("pe=a", 1), "run_dir": run}], ["pe"]), "m", spec)
    assert not s.values
    assert any("no cond/ffn_out_grad_norm/block_{last} in metrics.csv" in n for n in s.notes)


@pytest.mark.parametrize(
    "fields",
    [
        {"key": "cond/x/block_{last}"},  # {last} reads metrics.csv: needs steps
        {"key": "cond/x/block_{last}/*", "steps": "max"},  # one layer or every layer
    ],
)
def test_a_last_key_needs_steps_and_no_wildcard(fields):
    with pytest.raises(ValueError, match="last"):
        MetricSpec(**fields)
