"""Per-phase diagnostics (``phases:`` in a sweep spec) and ``bench sweep --dry-run``'s plan:
tuning trials skip what only the seed runs need, training is the same in both phases,
and the dry run times steps after a warm-up, with the workers the command would use."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from sweep_helpers import tiny_spec, write_spec

from bench.cli.main import main
from bench.config import ConfigError
from bench.sweeps import preflight
from bench.sweeps.layout import Sweep
from bench.sweeps.objective import TrialJob, trial_config
from bench.sweeps.spec import build_cell_config, load_spec, parse_spec

OFF = {"hessian": {"enabled": False}, "landscape": {"enabled": False}}


def _spec(**phases) -> dict:
    spec = tiny_spec()
    spec["base"]["diagnostics"].update(hessian={"enabled": True, "steps": [1.0], "iters": 2},
                                       landscape={"enabled": True, "resolution": 3})  # fmt: skip
    if phases:
        spec["phases"] = phases
    return spec


def _trial(spec, phase: str, tmp_path):
    sweep = Sweep(dir=tmp_path, spec=spec, storage_url=str(tmp_path / "journal.log"))
    job = TrialJob(study=SimpleNamespace(study_name="s"), trial=SimpleNamespace(number=3),
                   phase=phase, cell="norm_placement=pre",
                   overrides={"model.norm_placement": "pre", "train.lr": 3e-3},
                   seed=7 if phase == "seed" else None)  # fmt: skip
    return trial_config(sweep, job, {}, threads=1)


def test_tuning_trials_skip_the_diagnostics_phases_tune_switches_off_and_seed_runs_keep_them(
    tmp_path,
):
    spec = parse_spec(_spec(tune={"diagnostics": OFF}), "s.yaml")
    tune, seed = _trial(spec, "tune", tmp_path), _trial(spec, "seed", tmp_path)
    assert not tune.diagnostics.hessian.enabled and not tune.diagnostics.landscape.enabled
    assert seed.diagnostics.hessian.enabled and seed.diagnostics.landscape.enabled
    assert seed.diagnostics.landscape.resolution == 3  # the rest of base's section is kept
    # training is the same in both phases: a seed run re-runs its tuning trial's config
    for section in ("model", "task", "train"):
        a, b = getattr(tune, section).model_dump(), getattr(seed, section).model_dump()
        if section == "train":
            a.pop("seed"), b.pop("seed")
        assert a == b, section


def test_seed_runs_can_add_diagnostics_tuning_trials_do_not_have():
    spec = parse_spec(_spec(seeds={"diagnostics": {"gradients": True}}), "s.yaml")
    assert build_cell_config(spec, {}, "x", phase="seed").diagnostics.gradients
    assert not build_cell_config(spec, {}, "x", phase="tune").diagnostics.gradients
    assert not build_cell_config(spec, {}, "x", phase="search").diagnostics.gradients


@pytest.mark.parametrize(
    "phases, message",
    [
        ({"tune": {"train": {"lr": 1}}}, "s.yaml: unknown key 'phases.tune.train'; allowed: diagnostics"),
        ({"tunes": {}}, "unknown key 'phases.tunes' (did you mean 'phases.tune'?); allowed: seeds, tune"),
        ({"tune": {"diagnostics": {"hesian": {"enabled": False}}}},
         "s.yaml: phases.tune: unknown key 'diagnostics.hesian'"),
        ({"seeds": {"diagnostics": {"landscape": {"resolution": 1}}}},
         "s.yaml: phases.seeds: diagnostics.landscape.resolution=1"),
    ],
)  # fmt: skip
def test_a_bad_phases_section_is_one_line_naming_its_key(phases, message):
    with pytest.raises(ConfigError) as e:
        parse_spec(_spec(**phases), "s.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_quickstart_computes_the_hessian_and_landscape_only_in_seed_runs():
    spec = load_spec("sweeps/quickstart.yaml")
    tune = build_cell_config(spec, {}, "x", phase="tune").diagnostics
    seed = build_cell_config(spec, {}, "x", phase="seed").diagnostics
    assert not tune.hessian.enabled and not tune.landscape.enabled
    assert seed.hessian.enabled and seed.landscape.enabled
    assert tune.gradients and tune.attention_maps  # what the report reads of tuning trials


def test_a_spec_without_phases_writes_the_same_spec_yaml_as_before():
    assert "phases" not in parse_spec(tiny_spec(), "s.yaml").dump()
    assert "phases:" in parse_spec(_spec(tune={"diagnostics": OFF}), "s.yaml").dump()


# ----------------------------------------------------------------------------- --dry-run


def test_the_step_time_is_the_median_after_warm_up_steps(monkeypatch):
    # warm-up steps of 5 s and one slow timed step of 3 s among 10 ms ones
    durations = [5.0] * preflight.WARMUP_STEPS + [0.01] * (preflight.TIMED_STEPS - 1) + [3.0]
    ticks = itertools.chain.from_iterable(
        (t, t + d) for t, d in zip(itertools.count(0, 10), durations, strict=False)
    )
    monkeypatch.setattr(preflight, "_now", lambda: next(ticks))
    cfg = build_cell_config(parse_spec(tiny_spec(), "s.yaml"), {}, "base")
    assert preflight.time_steps(cfg, 1) == pytest.approx(0.01)


def test_the_estimate_counts_each_phases_diagnostics():
    rung = preflight.RungPlan("", ["a", "b"], step_seconds=0.01, max_steps=100,
                              extra_steps=20, seed_extra_steps=220, tune_runs=10, seed_runs=4)  # fmt: skip
    plan = preflight.Plan(["a", "b"], {}, tune_runs=10, seed_runs=4, rungs=[rung])
    tune_run = (100 + 20) * 0.01 + preflight.TRIAL_OVERHEAD_S
    seed_run = (100 + 220) * 0.01 + preflight.TRIAL_OVERHEAD_S
    assert plan.estimate(2) == pytest.approx((10 * tune_run + 4 * seed_run) / 2)


def test_dry_run_uses_the_workers_the_command_would_use(tmp_path, capsys):
    spec = tiny_spec()
    spec["launcher"] = {"workers": 2}
    path = write_spec(tmp_path / "s.yaml", spec)
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "sw")]) == 0
    assert "with 2 worker(s)" in capsys.readouterr().out  # the spec's launcher.workers
    path = write_spec(tmp_path / "one.yaml", tiny_spec())
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "sw")]) == 0
    assert "with 1 worker(s)" in capsys.readouterr().out  # a CPU machine's default
    assert not (tmp_path / "sw").exists()


def test_dry_run_with_the_slurm_launcher_prints_the_plan_and_submits_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("shutil.which", lambda name: None)  # no sbatch here
    path = write_spec(tmp_path / "s.yaml", tiny_spec())
    argv = ["sweep", str(path), "--dry-run", "--launcher", "slurm", "--workers", "3",
            "--time", "30", "--out", str(tmp_path / "sw")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "with 3 worker(s)" in out and "6 runs of 20 steps" in out
    assert "would submit: one Slurm job array of 3 worker(s), each --nodes=1" in out
    assert "--time=30" in out and "nothing submitted" in out
    assert not (tmp_path / "sw").exists()
