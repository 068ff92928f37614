"""``bench landscape`` says which planes it computed, and why a PCA plane is missing."""

from __future__ import annotations

import json
import shutil

from bench.cli import main


def test_landscape_names_its_planes_and_how_to_get_the_missing_pca_plane(tiny, capsys, tmp_path):
    from bench.training.run import train_run

    with_traj = train_run(tiny(**{"diagnostics.landscape.enabled": True, "diagnostics.landscape.every": 5,
                                  "diagnostics.landscape.resolution": 3}))  # fmt: skip
    capsys.readouterr()
    args = ["--resolution", "3", "--batches", "1"]
    assert main(["landscape", str(with_traj.run_dir), *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith(
        "computed: interpolation from init, random plane, PCA plane ("
    ) and lines[-2].endswith("% of the trajectory's variance)")
    landscape = json.loads(
        (with_traj.run_dir / "diagnostics" / "landscape_summary.json").read_text()
    )
    recorded = json.loads((with_traj.run_dir / "summary.json").read_text())["metrics"]
    assert {k: recorded[k] for k in landscape} == landscape  # the run's metrics say it too

    without = tmp_path / "no-trajectory"
    shutil.copytree(with_traj.run_dir, without)
    (without / "diagnostics" / "trajectory.npz").unlink()
    assert main(["landscape", str(without), *args]) == 0
    line = capsys.readouterr().out.splitlines()[-2]
    assert line == (
        "computed: interpolation from init, random plane; no PCA plane: the run saved no "
        "trajectory (diagnostics/trajectory.npz); train with diagnostics.landscape=true to save "
        "one (a snapshot every diagnostics.landscape.every steps)"
    )
