"""A size ladder in a sweep spec: every cell at every rung, training length following size."""

from __future__ import annotations

import math

import pytest
from sweep_helpers import tiny_spec

from bench.config import ConfigError, build_run_config
from bench.sweeps.spec import parse_spec, run_config_overrides
from bench.training.resources import count_params

LADDER = {"model.d_model": [16, 32, 64], "model.n_heads": [2, 2, 4]}


def ladder_spec(**scale):
    return tiny_spec(compare={"model.norm_placement": ["pre", "post"]},
                     scale={"ladder": LADDER, **scale})  # fmt: skip


def test_every_cell_runs_at_every_rung_smallest_first():
    spec = parse_spec(ladder_spec())
    keys = [k for k, _ in spec.cells()]
    assert keys == [
        "norm_placement=pre,d_model=16,n_heads=2",
        "norm_placement=post,d_model=16,n_heads=2",
        "norm_placement=pre,d_model=32,n_heads=2",
        "norm_placement=post,d_model=32,n_heads=2",
        "norm_placement=pre,d_model=64,n_heads=4",
        "norm_placement=post,d_model=64,n_heads=4",
    ]
    assert all("train.max_steps" not in o for _, o in spec.cells())  # budget: steps, the spec's
    assert spec.ladder_keys == ["model.d_model", "model.n_heads"]


def test_tokens_per_param_gives_each_rung_steps_in_proportion_to_its_size():
    spec = parse_spec(ladder_spec(budget="tokens_per_param", tokens_per_param=2.0))
    steps = {}
    for key, overrides in spec.cells():
        cfg = build_run_config(overrides={**run_config_overrides(spec), **overrides})
        per_step = cfg.task.batch_size * cfg.task.seq_len
        assert overrides["train.max_steps"] == math.ceil(2.0 * count_params(cfg) / per_step)
        steps[key.split(",", 1)[1]] = cfg.train.max_steps
    assert (
        steps["d_model=16,n_heads=2"]
        < steps["d_model=32,n_heads=2"]
        < steps["d_model=64,n_heads=4"]
    )


def test_fixed_tokens_gives_every_rung_the_same_steps():
    spec = parse_spec(ladder_spec(budget="tokens", tokens=64_000))
    per_step = spec.base["task"]["batch_size"] * spec.base["task"]["seq_len"]
    assert {o["train.max_steps"] for _, o in spec.cells()} == {math.ceil(64_000 / per_step)}


@pytest.mark.parametrize(
    ("scale", "compare", "match"),
    [
        ({"ladder": {"model.d_model": [16, 32], "model.n_heads": [2]}}, None, "lists are zipped"),
        ({"ladder": {"model.d_model": [16]}}, None, "two rungs or more"),
        ({"ladder": LADDER, "budget": "tokens_per_param"}, None, "needs 'tokens_per_param'"),
        ({"ladder": LADDER, "budget": "flops"}, None, "scale.budget"),
        ({"ladder": LADDER}, {"model.d_model": [16, 32]}, "scale.ladder and compare both set model.d_model"),
    ],
)  # fmt: skip
def test_a_bad_ladder_is_one_line_naming_what_is_wrong(scale, compare, match):
    spec = tiny_spec(compare=compare or {"model.norm_placement": ["pre"]}, scale=scale)
    with pytest.raises(ConfigError, match=match) as e:
        parse_spec(spec, "s.yaml")
    assert "\n" not in str(e.value)


def test_a_rung_the_model_refuses_is_named():
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]},
                     scale={"ladder": {"model.d_model": [16, 30], "model.n_heads": [2, 4]}})  # fmt: skip
    with pytest.raises(ConfigError, match="d_model"):
        parse_spec(spec, "s.yaml")


def test_dry_run_prints_rungs_cells_runs_and_each_rungs_time(tmp_path, capsys):
    from sweep_helpers import write_spec

    from bench.sweeps.launcher import run_sweep

    spec = write_spec(
        tmp_path / "s.yaml", ladder_spec(budget="tokens_per_param", tokens_per_param=2.0)
    )
    assert run_sweep(spec, workers=2, dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "size ladder: 3 rungs x 2 cells; tuned at every rung; budget: tokens_per_param" in out
    lines = [line for line in out.splitlines() if line.startswith("  d_model=")]
    assert [line.split(":")[0].strip() for line in lines] == [
        "d_model=16, n_heads=2", "d_model=32, n_heads=2", "d_model=64, n_heads=4"]  # fmt: skip
    params = [
        int(line.split("about ")[1].split(" parameters")[0].replace(",", "")) for line in lines
    ]
    runs = [int(line.split("parameters, ")[1].split(" runs")[0]) for line in lines]
    assert runs == [6, 6, 6]  # 2 cells x (2 tuning trials + 1 seed run) at every rung
    steps = [int(line.split(" runs of ")[1].split(" steps")[0]) for line in lines]
    assert params == sorted(params) and steps == sorted(steps) and steps[0] < steps[-1]
    assert "18 runs of the steps and step times above" in out
    assert not (tmp_path / "sweep").exists()


# ----------------------------------------------------------------------------- transfer


def test_tuning_only_the_smallest_rung_makes_its_cells_the_only_tuned_ones():
    from bench.sweeps.study import plan

    spec = parse_spec(ladder_spec(tune="smallest"))
    assert [c.key for c in plan(spec)] == [
        "norm_placement=pre,d_model=16,n_heads=2",
        "norm_placement=post,d_model=16,n_heads=2",
    ]
    source = spec.tuning_source()
    assert (
        source["norm_placement=post,d_model=64,n_heads=4"]
        == "norm_placement=post,d_model=16,n_heads=2"
    )
    assert (
        source["norm_placement=pre,d_model=32,n_heads=2"]
        == "norm_placement=pre,d_model=16,n_heads=2"
    )
    every = parse_spec(ladder_spec())
    assert all(k == v for k, v in every.tuning_source().items())
    assert len(plan(every)) == 6


@pytest.mark.parametrize(("changes", "what"), [({"seeds": 0}, "seeds"), ({"tune": None}, "tune")])
def test_transfer_without_seeds_or_tuning_is_refused_in_one_line(changes, what):
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]},
                     scale={"ladder": LADDER, "tune": "smallest"}, **changes)  # fmt: skip
    with pytest.raises(ConfigError, match=r"scale\.tune: smallest") as e:
        parse_spec(spec, "s.yaml")
    assert "\n" not in str(e.value) and what in str(e.value)


def test_dry_run_of_a_transfer_ladder_counts_tuning_at_the_smallest_rung_only(tmp_path, capsys):
    from sweep_helpers import write_spec

    from bench.sweeps.launcher import run_sweep

    spec = write_spec(tmp_path / "s.yaml", ladder_spec(tune="smallest"))
    assert run_sweep(spec, workers=2, dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "tuned at the smallest rung only" in out
    lines = [line for line in out.splitlines() if line.startswith("  d_model=")]
    runs = [int(line.split("parameters, ")[1].split(" runs")[0]) for line in lines]
    assert runs == [6, 2, 2]  # 2 cells x (2 tuning + 1 seed), then 2 cells x 1 seed
    assert "10 runs of the steps and step times above" in out
    assert out.count("0, transferred") == 4  # the larger rungs' cells run no tuning


def test_a_transfer_ladder_reruns_the_smallest_rungs_best_setting_at_every_rung(tmp_path):
    """A real sweep: tuning trials at the smallest rung only; each larger rung's seed run
    uses the learning rate its cell's tuning chose there; the report says so."""
    from sweep_helpers import write_spec

    from bench.report.collect import load_sweep
    from bench.report.tuning import method
    from bench.sweeps.worker import run_worker

    spec = tiny_spec(compare={"model.norm_placement": ["pre"]},
                     scale={"ladder": {"model.d_model": [16, 32]}, "tune": "smallest"})  # fmt: skip
    out = tmp_path / "sweep"
    path = write_spec(tmp_path / "s.yaml", spec)
    # one worker, in this process: the ladder is the worker's plan, not the launcher's
    assert run_worker(str(path), out=str(out), worker_id="0", threads=1) == 0
    data = load_sweep(out)
    tune = [r for r in data.rows if r["phase"] == "tune"]
    seed = [r for r in data.rows if r["phase"] == "seed"]
    assert {r["cell"] for r in tune} == {"norm_placement=pre,d_model=16"}
    assert len(tune) == 2 and len(seed) == 2
    best = min(tune, key=lambda r: r["value"])["train.lr"]
    assert {r["cell"]: r["train.lr"] for r in seed} == {
        "norm_placement=pre,d_model=16": best, "norm_placement=pre,d_model=32": best}  # fmt: skip
    assert len({r["params"] for r in seed}) == 2  # one seed run at each width
    assert "tuned at the smallest rung only (d_model=16)" in method(data)
    assert "standard parameterization" in method(data)
