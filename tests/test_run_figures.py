"""A run's diagnostics figures are drawn from its data files, at the end of the run or later.

``diagnostics.figures: false`` (the quickstart sweep) changes nothing a run measures,
logs or writes as data; it only leaves the PNGs to ``bench figures``, which draws the
same set of figures from the data files alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import records
from bench.cli import main
from bench.training.run import train_run
from tests.test_diagnostics_guard import CHEAP

# Every diagnostic that draws a figure, on the cheapest run that has them all.
ALL_FIGURES = {
    **CHEAP,
    "train.max_steps": 6,
    "train.val_every": 3,
    "diagnostics.hessian.enabled": True,
    "diagnostics.hessian.steps": [0.0, 1.0],
    "diagnostics.landscape.enabled": True,
    "diagnostics.landscape.every": 2,  # a trajectory, so the PCA plane too
    "train.threads": 1,  # bit for bit: not the thread count an earlier test left behind
}
TIMINGS = ("throughput/", "hessian/seconds")  # wall-clock measurements differ run to run


def _measured(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMINGS)}


def _files(run_dir, pattern: str) -> set[str]:
    return {p.name for p in (run_dir / records.DIAGNOSTICS).glob(pattern)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run with figures drawn at its end and without."""
    from bench.config import build_run_config

    out = tmp_path_factory.mktemp("figures")
    made = {}
    for on in (True, False):
        cfg = build_run_config(
            overrides={
                **ALL_FIGURES,
                "diagnostics.figures": on,
                "tracking.mode": "disabled",
                "tracking.run_dir": str(out / f"figures-{on}"),
            }
        )
        made[on] = train_run(cfg)
    return made


def test_without_figures_a_run_measures_and_writes_the_same_data_bit_for_bit(runs):
    drawn, bare = runs[True], runs[False]
    assert drawn.status == bare.status == "completed"
    assert set(_measured(bare.metrics)) == set(_measured(drawn.metrics))
    exact = {k: v for k, v in _measured(bare.metrics).items() if not k.startswith("landscape/")}
    assert exact == {k: drawn.metrics[k] for k in exact}  # == on floats: bitwise
    landscape = {k: v for k, v in bare.metrics.items() if k.startswith("landscape/")}
    assert landscape == pytest.approx({k: drawn.metrics[k] for k in landscape}, rel=1e-5, abs=1e-7)
    assert {"landscape/sharpness", "landscape/interp_barrier", "best/val/loss"} <= set(bare.metrics)
    assert _files(bare.run_dir, "*.png") == set()
    assert _files(bare.run_dir, "*.npz") == _files(drawn.run_dir, "*.npz")
    for name in _files(drawn.run_dir, "*.npz") | {"landscape_summary.json"}:
        if name.startswith("landscape"):
            _same_up_to_rounding(drawn.run_dir, bare.run_dir, name)
        else:
            a = (drawn.run_dir / records.DIAGNOSTICS / name).read_bytes()
            assert (bare.run_dir / records.DIAGNOSTICS / name).read_bytes() == a, name


def _same_up_to_rounding(a_dir, b_dir, name: str) -> None:
    """Landscape losses are batched over grid points in a chunk size measured by the
    clock (``landscape/chunking.py``): another chunk sums in another order, so two
    runs agree to rounding, not to the bit."""
    a, b = (d / records.DIAGNOSTICS / name for d in (a_dir, b_dir))
    if name.endswith(".json"):
        x, y = json.loads(a.read_text()), json.loads(b.read_text())
        assert x.keys() == y.keys(), name
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-7), (name, k)
        return
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files), name
        for k in x.files:
            if x[k].dtype.kind in "fc":
                np.testing.assert_allclose(x[k], y[k], rtol=1e-5, atol=1e-7, err_msg=f"{name}: {k}")
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}: {k}")


def test_bench_figures_draws_from_the_data_the_figures_a_run_draws_at_its_end(runs, capsys):
    drawn, bare = runs[True], runs[False]
    expected = _files(drawn.run_dir, "*.png")
    assert {"grad_norm_depth.png", "hessian_step0.png", "hessian_step6.png"} <= expected
    assert {"landscape_pca_contour.png", "attention_init.png", "attention_end.png"} <= expected

    assert main(["figures", str(bare.run_dir)]) == 0
    assert f"{bare.run_dir}: {len(expected)} figures drawn" in capsys.readouterr().out
    assert _files(bare.run_dir, "*.png") == expected
    for name in expected:  # a real PNG each
        assert (bare.run_dir / records.DIAGNOSTICS / name).read_bytes()[:4] == b"\x89PNG"

    assert main(["figures", str(bare.run_dir)]) == 0  # drawn already: nothing to do
    assert "0 figures drawn" in capsys.readouterr().out


def test_bench_figures_on_a_sweep_draws_every_run_in_it(runs, tmp_path, capsys):
    import shutil

    sweep = tmp_path / "sweep"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "runs": "runs"}))
    for i in range(2):
        shutil.copytree(runs[False].run_dir, sweep / "runs" / f"tune-c-t{i:04d}")
    for png in (sweep / "runs").rglob("*.png"):
        png.unlink()

    assert main(["figures", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        str(sweep / "runs" / "tune-c-t0000"),
        str(sweep / "runs" / "tune-c-t0001"),
    ]
    assert _files(sweep / "runs" / "tune-c-t0001", "*.png") == _files(runs[True].run_dir, "*.png")
