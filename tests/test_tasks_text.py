"""Specification of the byte-level text task: corpus, split, windows, baseline, errors."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.config import ConfigError, TaskConfig
from bench.tasks import N_SPECIAL, build_datamodule
from bench.tasks.base import val_sets
from bench.tasks.text import VAL_EVERY, span_length, stdlib_files, unigram_cross_entropy
from bench.tasks.vocab import IGNORE


def text_cfg(**kw: object) -> TaskConfig:
    base = {"name": "text", "seq_len": 32, "n_train": 64, "n_val": 16, "batch_size": 16}
    return TaskConfig(**(base | kw))


def test_default_corpus_is_the_stdlib_sources_without_tests_or_site_packages():
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    assert len(files) > 100
    assert files == sorted(files)
    for f in files:
        rel = f.relative_to(root)
        assert f.suffix == ".py"
        assert not {"site-packages", "test", "tests"} & set(rel.parts[:-1])


def test_default_corpus_is_split_by_file_with_every_tenth_file_held_out():
    dm = build_datamodule(text_cfg(max_bytes=400_000), "decoder")
    dm.setup()
    read = [str(f) for f in stdlib_files()][: len(dm.train_sources) + len(dm.val_sources)]
    assert dm.val_sources == read[::VAL_EVERY]
    assert set(dm.train_sources) == set(read) - set(read[::VAL_EVERY])
    assert not set(dm.train_sources) & set(dm.val_sources)
    assert len(dm.val_sources) >= 2


def test_stdlib_unigram_entropy_is_about_three_nats_per_byte():
    dm = build_datamodule(text_cfg(), "decoder")  # default max_bytes: 2 MB
    assert dm.metrics == ("acc",)
    # Measured 3.11 nats/byte for CPython 3.11's stdlib; below log(256) = 5.55 (uniform).
    assert 2.5 < dm.unigram_entropy < 3.6


def test_unigram_entropy_of_uniform_bytes_is_log_256():
    uniform = np.arange(256, dtype=np.uint8).repeat(3)
    assert unigram_cross_entropy(uniform, uniform) == pytest.approx(math.log(256))
    skewed = np.array([65] * 1000 + [66], dtype=np.uint8)
    # add-one smoothing: p(65) = (1000 + 1) / (1001 + 256)
    assert unigram_cross_entropy(skewed, skewed[:10]) == pytest.approx(math.log(1257 / 1001))


def test_windows_are_next_byte_pairs_at_each_eval_length():
    dm = build_datamodule(text_cfg(max_bytes=200_000), "decoder")
    assert dm.vocab_size == 256 + N_SPECIAL
    assert dm.eval_lengths == [32, 64, 128] and dm.max_positions == 128
    train = next(iter(dm.train_dataloader()))
    assert train["input_ids"].shape == train["labels"].shape == (16, 32)
    loaders = dm.val_dataloader()
    for n, loader in zip(dm.eval_lengths, loaders, strict=True):
        batches = list(loader)
        # 16 spans of 128 bytes, each cut into 128 / n windows
        assert sum(b["input_ids"].shape[0] for b in batches) == 16 * 128 // n
        for b in batches:
            assert b["input_ids"].shape[1] == n
            assert torch.equal(b["input_ids"][:, 1:], b["labels"][:, :-1])  # already shifted
            assert int(b["labels"].min()) >= N_SPECIAL and int(b["labels"].max()) < dm.vocab_size


def scored_bytes(dataset) -> list[list[int]]:
    """The labels each window scores (IGNORE left out), window by window."""
    return [[b for b in ex["labels"].tolist() if b != IGNORE] for ex in dataset]


def per_span(dataset, n_spans: int) -> list[list[int]]:
    """Scored labels joined span by span (the windows of a set are span-major)."""
    windows = scored_bytes(dataset)
    per = len(windows) // n_spans
    return [[b for w in windows[i * per : (i + 1) * per] for b in w] for i in range(n_spans)]


def test_every_eval_length_scores_the_same_bytes():
    # Press et al. 2022 compare lengths on the same text: a loss difference between
    # 1x and 4x must be the model's, not a different sample of text.
    dm = build_datamodule(text_cfg(max_bytes=200_000, eval_scales=[1, 2, 4]), "decoder")
    dm.setup()
    assert span_length(dm.eval_lengths) == 128
    sets = [per_span(ds, 16) for ds in dm.val_datasets]
    assert all(len(span) == 128 for span in sets[0])  # every byte of a span is scored once
    assert sets[0] == sets[1] == sets[2]
    assert len({tuple(span) for span in sets[0]}) > 1  # spans differ from each other


def test_span_is_the_least_common_multiple_of_the_eval_lengths():
    assert span_length([32, 64, 128]) == 128
    assert span_length([16, 32, 48]) == 96  # scales [1, 2, 3]: 3L is not a multiple of 2L
    dm = build_datamodule(text_cfg(max_bytes=100_000, eval_scales=[1, 2, 3], seq_len=16), "decoder")
    dm.setup()
    sets = [per_span(ds, 16) for ds in dm.val_datasets]
    assert sets[0] == sets[1] == sets[2] and len(sets[0][0]) == 96


def test_sliding_window_sets_score_the_last_seq_len_bytes_of_each_span_with_more_context():
    dm = build_datamodule(text_cfg(max_bytes=200_000, sliding_eval=True), "decoder")
    dm.setup()
    assert val_sets(dm.cfg, dm.eval_lengths) == [
        ("", 32), ("", 64), ("", 128), ("_sw", 32), ("_sw", 64), ("_sw", 128)
    ]  # fmt: skip
    nonoverlapping, sliding = dm.val_datasets[:3], dm.val_datasets[3:]
    last_bytes = [span[-32:] for span in per_span(nonoverlapping[0], 16)]
    for n, ds in zip(dm.eval_lengths, sliding, strict=True):
        assert len(ds) == 16  # one window a span
        assert scored_bytes(ds) == last_bytes  # the same bytes at every length
        for ex in ds:
            assert ex["input_ids"].shape == (n,)
            scored = ex["labels"] != IGNORE
            assert not scored[: n - 32].any() and scored[n - 32 :].all()  # >= n - 32 context


def test_sliding_eval_is_off_by_default_and_only_for_text():
    dm = build_datamodule(text_cfg(max_bytes=100_000), "decoder")
    dm.setup()
    assert len(dm.val_datasets) == 3
    with pytest.raises(ConfigError, match=r"task\.sliding_eval") as err:
        build_datamodule(TaskConfig(name="copy", sliding_eval=True), "decoder")
    assert "\n" not in str(err.value)


def test_windows_come_from_their_own_split():
    dm = build_datamodule(text_cfg(max_bytes=200_000), "decoder")
    dm.setup()
    val_text = b"".join(Path(p).read_bytes() for p in dm.val_sources)
    for ex in dm.val_datasets[0]:
        window = bytes((torch.cat([ex["input_ids"][:1], ex["labels"]]) - N_SPECIAL).tolist())
        assert window in val_text


def test_same_seed_gives_the_same_windows_and_another_seed_others():
    def windows(seed: int) -> torch.Tensor:
        dm = build_datamodule(text_cfg(max_bytes=100_000, seed=seed), "decoder")
        return torch.cat(
            [next(iter(dm.train_dataloader()))["input_ids"]]
            + [next(iter(v))["input_ids"].flatten()[None, :32] for v in dm.val_dataloader()]
        )

    assert torch.equal(windows(3), windows(3))
    assert not torch.equal(windows(3), windows(4))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_folders_are_read_recursively_in_order_skipping_hidden_files(tmp_path: Path):
    for i in range(12):
        write(tmp_path / "corpus" / f"sub{i % 2}" / f"f{i:02d}.txt", bytes([97 + i]) * 300)
    write(tmp_path / "corpus" / ".hidden" / "secret.txt", b"#" * 300)
    write(tmp_path / "corpus" / ".notes", b"#" * 300)
    dm = build_datamodule(text_cfg(paths=[str(tmp_path / "corpus")], seq_len=8), "decoder")
    dm.setup()
    names = [Path(p).name for p in dm.val_sources + dm.train_sources]
    assert sorted(names) == [f"f{i:02d}.txt" for i in range(12)]
    assert len(dm.val_sources) == 2  # files 0 and 10 of the sorted order
    train_bytes = {b for ex in dm.train_dataset for b in (ex["input_ids"] - N_SPECIAL).tolist()}
    assert ord("#") not in train_bytes


def test_max_bytes_caps_what_is_read(tmp_path: Path):
    paths = [str(write(tmp_path / f"{i}.txt", b"x" * 1000)) for i in range(5)]
    dm = build_datamodule(text_cfg(paths=paths, seq_len=8, max_bytes=2500), "decoder")
    dm.setup()
    assert len(dm.train_sources) + len(dm.val_sources) == 3  # 1000 + 1000 + 500 bytes
    assert len(dm.val_datasets[0].stream) + len(dm.train_dataset.stream) == 2500


def test_a_single_file_is_split_by_bytes(tmp_path: Path):
    f = write(tmp_path / "one.txt", bytes(range(256)) * 10)
    dm = build_datamodule(text_cfg(paths=[str(f)], seq_len=8), "decoder")
    dm.setup()
    assert len(dm.train_dataset.stream) == 2304 and len(dm.val_datasets[0].stream) == 256
    assert dm.unigram_entropy == pytest.approx(math.log(256))


@pytest.mark.parametrize(
    ("kw", "arch", "key"),
    [
        ({}, "encoder_decoder", "model.arch"),
        ({"paths": ["/nonexistent/corpus.txt"]}, "decoder", "task.paths"),
        ({"hf_dataset": "surely/not-cached", "paths": ["x"]}, "decoder", "task.hf_dataset"),
    ],
)
def test_bad_settings_raise_a_config_error_naming_the_key(kw: dict, arch: str, key: str):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        build_datamodule(text_cfg(**kw), arch)
    assert "\n" not in str(err.value)


def test_an_empty_corpus_is_a_config_error(tmp_path: Path):
    empty = write(tmp_path / "empty.txt", b"")
    dm = build_datamodule(text_cfg(paths=[str(empty)]), "decoder")
    with pytest.raises(ConfigError, match=r"task\.paths.*empty"):
        dm.setup()


def test_text_shorter_than_one_validation_window_is_a_config_error(tmp_path: Path):
    short = write(tmp_path / "short.txt", b"abc" * 100)  # 30 validation bytes < 129
    with pytest.raises(ConfigError, match=r"task\.max_bytes"):
        build_datamodule(text_cfg(paths=[str(short)]), "decoder").setup()


def test_an_uncached_hugging_face_dataset_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    # Whether or not `datasets` is installed, nothing may be downloaded: a clear error.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # restored afterwards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dm = build_datamodule(text_cfg(hf_dataset="surely/not-cached-anywhere"), "decoder")
    with pytest.raises(ConfigError, match=r"task\.hf_dataset='surely/not-cached-anywhere'"):
        dm.setup()


def test_a_run_logs_the_sliding_window_losses_next_to_the_non_overlapping_ones(tiny):
    from bench.training.run import train_run

    cfg = tiny(
        **{
            "task.name": "text",
            "task.max_bytes": 100_000,
            "task.n_val": 8,
            "task.eval_scales": [1, 2],
            "task.sliding_eval": True,
            "model.pos_encoding": "alibi",
            "train.max_steps": 2,
            "train.val_every": 2,
        }
    )
    metrics = train_run(cfg).metrics
    for key in ("val/loss@8", "val/loss@16", "val/loss_sw@8", "val/loss_sw@16", "val/acc_sw@16"):
        assert math.isfinite(metrics[key]), key
    assert metrics["val/loss"] == metrics["val/loss@8"]
    assert metrics["val/loss_sw@8"] != metrics["val/loss_sw@16"]  # other context, other loss
