"""The offline-run reader against real files written by wandb (no mocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from wandb_runs import find_run_files, read_run

from bench.wandb_file import BLOCK_SIZE, FILE_HEADER, CorruptRunFileError, iter_records

BLOB = "0123456789abcdef" * 5000  # 80 kB: one record spread over three blocks
VAL = [3.0, 1.0, 2.0]


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real offline run with config, history, media, metric definitions, a large
    record and a failing exit code."""
    import wandb

    root = tmp_path_factory.mktemp("wandb-run")
    run = wandb.init(
        mode="offline",
        dir=str(root),
        project="proj",
        group="grp",
        job_type="phase",
        name="nice-name",
        tags=["t1", "pos_encoding=rope"],
        config={"model.pos_encoding": "rope", "train.lr": 0.003, "task.eval_scales": [1, 2]},
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        reinit="create_new",
    )
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step")
    run.define_metric("val/loss", summary="min")
    for i, v in enumerate(VAL):
        run.log({"val/loss": v, "trainer/global_step": 10 * i})
    for i in range(200):  # enough rows to fill more than one block
        run.log({"train/loss": 1.0 / (i + 1), "trainer/global_step": i})
    run.log({"nested": {"a": 1}, "img": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))})
    run.config.update({"meta.cell": "c1"})
    run.summary["blob"] = BLOB
    run.finish(exit_code=3)
    (path,) = find_run_files(root)
    return path


def _copy(src: Path, dst_dir: Path, data: bytes | None = None) -> Path:
    dst = dst_dir / src.name
    if data is None:
        shutil.copyfile(src, dst)
    else:
        dst.write_bytes(data)
    return dst


def test_reads_run_metadata_config_and_exit_code(run_file: Path) -> None:
    run = read_run(run_file)
    assert (run.project, run.group, run.job_type, run.name) == ("proj", "grp", "phase", "nice-name")
    assert run.tags == ["t1", "pos_encoding=rope"]
    assert run.run_id and run.path == run_file
    assert run.config == {
        "model.pos_encoding": "rope",
        "train.lr": 0.003,
        "task.eval_scales": [1, 2],
        "meta.cell": "c1",
    }
    assert run.exit_code == 3 and run.finished


def test_history_rows_keep_order_steps_and_values(run_file: Path) -> None:
    run = read_run(run_file)
    assert run.series("val/loss") == [(0, 3.0), (10, 1.0), (20, 2.0)]
    assert run.series("train/loss") == [(i, 1.0 / (i + 1)) for i in range(200)]
    assert [row["_step"] for row in run.history] == list(range(len(run.history)))
    assert run.history[-1]["nested"] == {"a": 1}


def test_summary_has_the_defined_min_and_large_values(run_file: Path) -> None:
    run = read_run(run_file)
    assert run.summary["val/loss"] == {"min": min(VAL)}
    assert run.summary["train/loss"] == 1.0 / 200
    assert run.summary["blob"] == BLOB


def test_metric_definitions_and_media_are_listed(run_file: Path) -> None:
    run = read_run(run_file)
    assert run.metric_defs["val/loss"].summary == ["min"]
    assert run.metric_defs["*"].step_metric == "trainer/global_step"
    assert run.metric_defs["*"].is_glob
    assert run.media_keys == ["img"]
    image_path = run.history[-1]["img"]["path"]
    assert image_path in run.files
    assert (run.run_dir / "files" / image_path).is_file()


def test_a_record_larger_than_a_block_is_reassembled(run_file: Path) -> None:
    assert run_file.stat().st_size > 2 * BLOCK_SIZE
    sizes = [r.ByteSize() for r in iter_records(run_file)]
    assert max(sizes) > BLOCK_SIZE


def test_truncated_file_yields_the_complete_records_before_the_cut(
    run_file: Path, tmp_path: Path
) -> None:
    full = [r.SerializeToString() for r in iter_records(run_file)]
    data = run_file.read_bytes()
    # mid-chunk at the end, mid large record (at a block boundary and inside a
    # block), inside a chunk header, right after the file header
    for cut in (len(data) - 3, 2 * BLOCK_SIZE, 2 * BLOCK_SIZE + 100, 8, len(FILE_HEADER)):
        copy = _copy(run_file, tmp_path, data[:cut])
        got = [r.SerializeToString() for r in iter_records(copy)]
        assert got == full[: len(got)], cut
        assert len(got) < len(full), cut
    crashed = read_run(_copy(run_file, tmp_path, data[: len(data) - 3]))
    assert crashed.exit_code is None and not crashed.finished
    assert crashed.series("val/loss") == [(0, 3.0), (10, 1.0), (20, 2.0)]


def test_corrupt_bytes_raise_a_clear_error(run_file: Path, tmp_path: Path) -> None:
    data = bytearray(run_file.read_bytes())
    data[200] ^= 0xFF  # inside the payload of an early record
    with pytest.raises(CorruptRunFileError, match="checksum mismatch"):
        list(iter_records(_copy(run_file, tmp_path, bytes(data))))


def test_a_file_that_is_not_a_run_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"PK\x03\x04 not a wandb file")
    with pytest.raises(CorruptRunFileError, match="not a W&B run file"):
        list(iter_records(path))


def test_find_run_files_finds_each_run_once(run_file: Path, tmp_path: Path) -> None:
    offline_dir = run_file.parent
    for name in ("a/wandb", "b/c/wandb"):
        shutil.copytree(offline_dir, tmp_path / name / offline_dir.name)
    (tmp_path / "a/wandb/latest-run").symlink_to(tmp_path / "a/wandb" / offline_dir.name)
    found = find_run_files(tmp_path)
    assert [p.relative_to(tmp_path).parts[:2] for p in found] == [("a", "wandb"), ("b", "c")]
    assert read_run(tmp_path / "b").run_id == read_run(run_file).run_id
    with pytest.raises(FileNotFoundError, match="found 2"):
        read_run(tmp_path)
