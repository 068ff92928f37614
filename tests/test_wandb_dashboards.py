"""W&B shows a sweep the way the report does: each run's diagnostic figures as images and
its cell's axes as top-level summary keys; ``bench report --wandb`` adds the report's figures
to the sweep-level run (real offline runs, read back from their ``.wandb`` files)."""

from __future__ import annotations

import shutil

from wandb_runs import find_run_files, read_run

from tests.finished_sweep import finished_sweep


def test_a_run_logs_its_diagnostic_figures_and_axis_summary_keys(tiny):
    from bench.training.run import train_run

    cfg = tiny(
        **{
            "tracking.mode": "offline",
            "tracking.meta": {"cell": "norm_placement=post", "phase": "seed", "seed": 2},
            "model.norm_placement": "post",
            "diagnostics.gradients_every": 5,
            "diagnostics.figures": True,
        }
    )
    result = train_run(cfg)
    pngs = sorted(p.stem for p in (result.run_dir / "diagnostics").glob("*.png"))
    assert "grad_norm_depth" in pngs  # the gradient-norm heatmap
    run = read_run(find_run_files(result.run_dir / "wandb")[0])
    figures = [k for k in run.media_keys if k.startswith("diagnostics/")]
    assert figures == [f"diagnostics/{stem}" for stem in pngs]  # every figure, as an image
    (step, image), *_ = run.series("diagnostics/grad_norm_depth")
    assert image["_type"].startswith("image") and step == 20  # at the run's last step
    s = run.summary
    assert (s["norm_placement"], s["pos_encoding"], s["task"]) == ("post", "learned", "copy")
    assert (s["cell"], s["phase"], s["seed"]) == ("norm_placement=post", "seed", 2)


def test_report_with_wandb_adds_its_figures_to_the_sweep_level_run(tmp_path):
    from bench.report import build_report
    from bench.sweeps.layout import Sweep, open_sweep_dir
    from bench.sweeps.progress.wandb_run import log_sweep_to_wandb

    source, _ = finished_sweep()
    copy = tmp_path / "daily"
    shutil.copytree(source, copy)
    opened = open_sweep_dir(copy)  # its storage is still the original journal (read only)
    base = {**opened.spec.base, "tracking": {"mode": "offline"}}
    log_sweep_to_wandb(
        Sweep(opened.spec.model_copy(update={"base": base}), copy, opened.storage_url)
    )
    build_report(
        copy, tmp_path / "report", wandb=True, wandb_mode="offline", storage=opened.storage_url
    )
    runs = [read_run(p) for p in find_run_files(copy / "wandb")]
    assert len(runs) == 2
    sweep_run, report_run = sorted(runs, key=lambda r: len(r.media_keys))
    assert sweep_run.run_id == report_run.run_id  # one run on W&B once synced
    assert report_run.job_type == sweep_run.job_type == "sweep"
    assert "trials" in sweep_run.media_keys
    figures = {p.stem for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert figures and {f"report/{f}" for f in figures} <= set(report_run.media_keys)
