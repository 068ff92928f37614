"""Throughput diagnostics: FLOPs, peaks and MFU, excluded time, the `bench throughput` rows."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from bench.cli.throughput import (
    format_table,
    round_order,
    row_peak,
    run_throughput,
)
from bench.config import DiagnosticsConfig, HessianConfig, ModelConfig, build_run_config
from bench.diagnostics.batches import batch_tokens
from bench.diagnostics.throughput import peak
from bench.diagnostics.throughput.callback import ThroughputDiagnostics
from bench.diagnostics.throughput.flops import (
    flops_per_batch,
    matmul_params,
    measured_flops_per_batch,
    model_flops_per_token,
)
from bench.diagnostics.throughput.median_interval import median_interval
from bench.diagnostics.throughput.peak_memory import peak_memory_mb
from bench.diagnostics.throughput.stopwatch import (
    DIAGNOSTICS_TIME,
    Stopwatch,
    exclude_from_throughput,
)
from bench.training.module import BenchModule

SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_len": 64, "vocab_size": 50}


def _batch(cfg: ModelConfig, b: int, t: int, s: int | None = None) -> dict[str, torch.Tensor]:
    if cfg.arch == "decoder":
        return {"input_ids": torch.zeros(b, t, dtype=torch.long)}
    return {
        "src": torch.zeros(b, s or t, dtype=torch.long),
        "tgt_in": torch.zeros(b, t, dtype=torch.long),
    }


# ----------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize(
    "axes",
    [
        {},
        {"ffn": "swiglu"},
        {"n_kv_heads": 2},
        {"pos_encoding": "rope", "norm_placement": "sandwich"},
        {"pos_encoding": "alibi", "norm_placement": "deepnorm"},
        {"pos_encoding": "t5", "tie_embeddings": False},
        {"arch": "encoder_decoder"},
        {"arch": "encoder_decoder", "n_encoder_layers": 3, "ffn": "swiglu", "n_kv_heads": 1},
        # issue 26's norms and blocks: no matmul of their own, the same count
        {"norm_type": "dyt", "n_kv_heads": 2},
        {"norm_placement": "peri", "norm_type": "dyt"},
        {"norm_placement": "mixln", "mixln_post_fraction": 0.5},  # block 0 Post-LN, 1 Pre-LN
        {"block": "parallel", "n_kv_heads": 2, "pos_encoding": "rope"},
        {"arch": "encoder_decoder", "norm_placement": "mixln", "norm_type": "dyt"},
    ],
)
def test_analytic_flops_per_token_agree_with_measure_flops(axes):
    # The 6N + 12 L d T convention counts exactly the matmuls FlopCounterMode sees
    # (full T x T attention, no causal halving); we allow 0.1% for rounding.
    cfg = ModelConfig(**SMALL, **axes)
    batch = _batch(cfg, 2, 24)
    analytic = model_flops_per_token(cfg, 24) * batch_tokens(batch)
    assert measured_flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3)


def test_encoder_decoder_flops_follow_source_and_target_lengths():
    cfg = ModelConfig(**SMALL, arch="encoder_decoder")
    batch = _batch(cfg, 2, 12, s=20)
    analytic = model_flops_per_token(cfg, 12, src_len=20) * batch_tokens(batch)
    assert measured_flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3)


def test_an_encoder_decoder_batch_with_source_padding_is_counted_not_estimated():
    # SCAN's batches carry src_pad; the FLOP counter traces meta tensors, which hold no
    # values to tell whether any position is padding.
    cfg = ModelConfig(**SMALL, arch="encoder_decoder")
    batch = {**_batch(cfg, 2, 12, s=20), "src_pad": torch.zeros(2, 20, dtype=torch.bool)}
    batch["src_pad"][0, 15:] = True
    analytic = model_flops_per_token(cfg, 12, src_len=20) * batch_tokens(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the analytic fallback warns
        assert flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3)


def test_inference_flops_are_2n_plus_4ldt():
    cfg = ModelConfig(**SMALL)
    batch = _batch(cfg, 2, 16)
    n = matmul_params(cfg)
    expected = 2 * n + 4 * cfg.n_layers * cfg.d_model * 16
    assert model_flops_per_token(cfg, 16, training=False) == expected
    assert measured_flops_per_batch(cfg, batch, training=False) == pytest.approx(
        expected * 32, rel=1e-3
    )


def test_matmul_params_count_the_head_even_when_tied():
    cfg = ModelConfig(**SMALL)
    from bench.model import build_model

    model = build_model(cfg)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(cfg) == linear  # lm_head.weight is the tied embedding, counted once here


# ----------------------------------------------------------------------------- peaks


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156e12),
        ("NVIDIA A100-PCIE-40GB", "bf16", 312e12),
        ("NVIDIA L4", "bf16", 121e12),
        ("NVIDIA A10G", "fp32", 31.2e12),
        ("Tesla V100-SXM2-16GB", "fp16", 125e12),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2e12),
        ("NVIDIA GeForce RTX 3090", "bf16", 71e12),
    ],
)
def test_known_gpu_peaks_are_the_dense_figures(name, dtype, expected):
    assert peak.known_peak(name, dtype) == expected


def test_unknown_gpus_and_missing_dtypes_have_no_table_peak():
    assert peak.known_peak("NVIDIA Imaginary 9000", "bf16") is None
    assert peak.known_peak("Tesla V100-SXM2-16GB", "bf16") is None  # no bf16 tensor cores


def test_precision_maps_to_the_matmul_dtype():
    assert peak.compute_dtype("bf16-mixed") == "bf16"
    assert peak.compute_dtype("16-mixed") == "fp16"
    assert (
        peak.compute_dtype("32-true") == "fp32"
    )  # PyTorch's default matmul precision is "highest"


def _counting_measure(value: float):
    calls = []

    def measure(device, dtype):
        calls.append((device, dtype))
        return value

    return measure, calls


def test_override_beats_the_table_and_the_measurement(tmp_path):
    measure, calls = _counting_measure(1e9)
    got = peak.peak_flops(
        "cuda", "bf16-mixed", override=5e12, name="NVIDIA A100-SXM4-40GB", measure=measure
    )
    assert got == (5e12, "override")
    assert calls == []


def test_a_known_gpu_uses_the_table_for_its_precision(tmp_path):
    measure, calls = _counting_measure(1e9)
    got = peak.peak_flops("cuda", "bf16-mixed", name="NVIDIA A100-SXM4-40GB", measure=measure)
    assert got == (312e12, "table")
    assert calls == []


def test_the_measured_peak_is_cached_per_device_threads_and_dtype(tmp_path):
    cache = tmp_path / "bench" / "peak_flops.json"
    measure, calls = _counting_measure(3.5e10)
    first = peak.peak_flops("cpu", "32-true", cache_path=cache, measure=measure)
    second = peak.peak_flops("cpu", "32-true", cache_path=cache, measure=measure)
    assert first == second == (3.5e10, "measured")
    assert len(calls) == 1  # the second call read the file
    stored = json.loads(cache.read_text())
    assert stored == {peak.cache_key("cpu", "fp32"): 3.5e10}
    assert f"threads={torch.get_num_threads()}" in peak.cache_key("cpu", "fp32")


def test_the_default_cache_lives_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert peak.default_cache_path() == tmp_path / "bench" / "peak_flops.json"


def test_matmul_peak_measurement_returns_a_positive_rate():
    assert peak.measure_matmul_peak("cpu", sizes=(64,), min_time=0.01) > 0


# ----------------------------------------------------------------------------- excluded time


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_excluded_blocks_count_once():
    clock = _FakeClock()
    watch = Stopwatch(clock)
    with watch.exclude():
        clock.now += 1.0
        with watch.exclude():
            clock.now += 2.0
    clock.now += 5.0  # outside: not excluded
    assert watch.total == 3.0


class _Work(L.Callback):
    """Spends 0.5 fake seconds of training and 1.0 of diagnostics in every step."""

    def __init__(self, clock: _FakeClock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.clock.now += 0.5
        with exclude_from_throughput():
            self.clock.now += 1.0


class _Training(L.Callback):
    """Spends 0.5 fake seconds of training in every step, between backward and the update."""

    def __init__(self, clock: _FakeClock) -> None:
        self.clock = clock

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.clock.now += 0.5


def _tiny_module() -> tuple[BenchModule, DataLoader, DataLoader]:
    cfg = build_run_config(
        overrides={
            "model.d_model": 32,
            "model.n_layers": 2,
            "model.n_heads": 2,
            "model.vocab_size": 16,
        }
    )
    torch.manual_seed(0)
    ids = torch.randint(0, 16, (16, 9))
    batches = [
        {"input_ids": ids[i : i + 4, :-1], "labels": ids[i : i + 4, 1:]} for i in range(0, 16, 4)
    ]
    return (
        BenchModule(cfg),
        DataLoader(batches, batch_size=None),
        DataLoader(batches, batch_size=None),
    )


def _fit(
    tmp_path: Path, steps: int, *callbacks: L.Callback, val: bool = False, log_every: int = 1
) -> L.Trainer:
    module, train, val_loader = _tiny_module()
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs", version=0),
        log_every_n_steps=log_every,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        **(
            {"val_check_interval": steps, "check_val_every_n_epoch": None}
            if val
            else {"limit_val_batches": 0}
        ),
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val_loader if val else None)
    return trainer


def test_time_inside_excluded_blocks_is_not_training_time(tmp_path, monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(DIAGNOSTICS_TIME, "clock", clock)
    tp = ThroughputDiagnostics(DiagnosticsConfig(peak_flops=1e9), warmup=1, window=3, clock=clock)
    _fit(tmp_path, 6, tp, _Work(clock))
    s = tp.summary()
    assert s["throughput/step_time"] == pytest.approx(0.5)
    assert s["throughput/tokens_per_sec"] == pytest.approx(4 * 8 / 0.5)


def test_a_hessian_and_trajectory_snapshots_at_training_steps_are_not_training_time(
    tmp_path, monkeypatch
):
    from bench.diagnostics.hessian import callback as hessian_callback
    from bench.diagnostics.landscape import callback as landscape_callback

    clock = _FakeClock()
    monkeypatch.setattr(DIAGNOSTICS_TIME, "clock", clock)
    analysis, flatten = hessian_callback.hessian_analysis, landscape_callback.flatten_params

    def slow_analysis(*args, **kwargs):
        clock.now += 10.0  # an analysis takes seconds
        return analysis(*args, **kwargs)

    def slow_flatten(*args, **kwargs):
        clock.now += 1.0  # a snapshot of a large model's weights
        return flatten(*args, **kwargs)

    monkeypatch.setattr(hessian_callback, "hessian_analysis", slow_analysis)
    monkeypatch.setattr(landscape_callback, "flatten_params", slow_flatten)
    _, train, _ = _tiny_module()
    hessian = hessian_callback.HessianCallback(
        tmp_path, HessianConfig(steps=[0.5, 1.0], iters=2), batch=next(iter(train)), figures=False
    )
    trajectory = landscape_callback.LandscapeCallback(tmp_path, every=2)
    tp = ThroughputDiagnostics(DiagnosticsConfig(peak_flops=1e9), warmup=1, window=3, clock=clock)
    training = _Training(clock)  # inside the step, whatever the callbacks' order
    _fit(tmp_path, 6, training, hessian, trajectory, tp)  # build_callbacks' order
    assert sorted(hessian.results) == [3, 6] and trajectory.steps == [0, 2, 4, 6]
    assert tp.summary()["throughput/step_time"] == pytest.approx(0.5)


def test_callback_logs_throughput_keys_and_mfu_against_the_override(tmp_path):
    override = 2e9
    tp = ThroughputDiagnostics(DiagnosticsConfig(peak_flops=override), warmup=1, window=3)
    trainer = _fit(tmp_path, 8, tp, val=True)
    assert tp.peak_source == "override"
    cfg = trainer.lightning_module.cfg.model
    assert tp.flops_per_batch == pytest.approx(model_flops_per_token(cfg, 8) * 32, rel=1e-3)

    rows = list(csv.DictReader((tmp_path / "logs" / "version_0" / "metrics.csv").open()))
    keys = {k for r in rows for k, v in r.items() if v != ""}
    for key in [
        "throughput/tokens_per_sec",
        "throughput/step_time",
        "throughput/flops_per_sec",
        "throughput/mfu",
        "throughput/peak_mem_mb",
        "throughput/infer_tokens_per_sec",
    ]:
        assert key in keys, key
    last = next(r for r in reversed(rows) if r.get("throughput/mfu"))
    fps, tps = float(last["throughput/flops_per_sec"]), float(last["throughput/tokens_per_sec"])
    assert float(last["throughput/mfu"]) == pytest.approx(fps / override, rel=1e-6)
    assert fps == pytest.approx(tps * tp.flops_per_batch / 32, rel=1e-6)
    assert float(last["throughput/peak_mem_mb"]) > 0
    m = tp.summary()
    assert m["throughput/mfu"] == pytest.approx(m["throughput/flops_per_sec"] / override)


def test_throughput_is_logged_only_at_the_steps_lightning_writes(tmp_path, monkeypatch):
    tp = ThroughputDiagnostics(DiagnosticsConfig(peak_flops=1e9), warmup=1, window=2)
    calls: list[int] = []
    log = BenchModule.log

    def spy(self, name, *args, **kwargs):
        if name.startswith("throughput/"):
            calls.append(self.trainer.global_step)
        return log(self, name, *args, **kwargs)

    monkeypatch.setattr(BenchModule, "log", spy)
    _fit(tmp_path, 12, tp, log_every=3)

    rows = list(csv.DictReader((tmp_path / "logs" / "version_0" / "metrics.csv").open()))
    written = [int(r["step"]) for r in rows if r.get("throughput/tokens_per_sec")]
    assert written == [2, 5, 8, 11]  # every log step once the window is full (0-based steps)
    assert sorted(set(calls)) == [s + 1 for s in written]  # logged there (after the step), only
    assert tp.summary()["throughput/tokens_per_sec"] > 0  # whole-run figures see every step


def test_without_override_the_cpu_peak_comes_from_the_cache(tmp_path):
    cache = tmp_path / "peak.json"
    cache.write_text(json.dumps({peak.cache_key("cpu", "fp32"): 4e10}))
    tp = ThroughputDiagnostics(DiagnosticsConfig(), warmup=1, window=2, cache_path=cache)
    _fit(tmp_path, 4, tp)
    assert (tp.peak, tp.peak_source) == (4e10, "measured")
    assert tp.summary()["throughput/mfu"] == pytest.approx(
        tp.summary()["throughput/flops_per_sec"] / 4e10
    )


def test_a_cached_peak_below_what_the_run_achieved_is_measured_again(tmp_path):
    # a peak cached while other work held the cores: 1 kFLOP/s, far below any run
    cache = tmp_path / "peak.json"
    cache.write_text(json.dumps({peak.cache_key("cpu", "fp32"): 1e3}))
    tp = ThroughputDiagnostics(DiagnosticsConfig(), warmup=1, window=2, cache_path=cache)
    _fit(tmp_path, 4, tp)
    m = tp.summary()
    remeasured = json.loads(cache.read_text())[peak.cache_key("cpu", "fp32")]
    assert remeasured > m["throughput/flops_per_sec"]
    assert m["throughput/peak_flops"] == tp.peak == remeasured
    assert 0 < m["throughput/mfu"] < 1


def test_a_refreshed_peak_never_lowers_the_cached_one(tmp_path):
    cache = tmp_path / "peak.json"
    cache.write_text(json.dumps({peak.cache_key("cpu", "fp32"): 5e10}))
    low, _ = _counting_measure(2e10)
    high, _ = _counting_measure(8e10)
    assert peak.refresh_matmul_peak("cpu", "fp32", cache_path=cache, measure=low) == 5e10
    assert peak.refresh_matmul_peak("cpu", "fp32", cache_path=cache, measure=high) == 8e10
    assert json.loads(cache.read_text()) == {peak.cache_key("cpu", "fp32"): 8e10}


def test_peak_memory_is_reported_in_megabytes():
    before = peak_memory_mb("cpu")
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    x += 1
    assert peak_memory_mb("cpu") >= before
    assert peak_memory_mb("cpu") > 64


def test_train_run_reports_throughput_in_its_metrics(tiny, tmp_path):
    from bench.training.run import train_run

    cfg = tiny(**{"diagnostics.peak_flops": 1e10})
    result = train_run(cfg)  # bench.diagnostics.build_callbacks adds ThroughputDiagnostics
    assert result.status == "completed"
    for key in ["throughput/tokens_per_sec", "throughput/mfu", "throughput/infer_tokens_per_sec"]:
        assert result.metrics[key] > 0, key


# ----------------------------------------------------------------------------- bench throughput


def test_the_median_interval_uses_the_order_statistics_of_its_coverage():
    nine = median_interval([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0])
    assert (nine.median, nine.low, nine.high) == (5.0, 2.0, 8.0)  # 2nd smallest, 2nd largest
    assert nine.coverage == pytest.approx(1 - 2 * 10 / 512)  # P(Bin(9, 1/2) <= 1) = 10/512
    five = median_interval([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (five.low, five.high, five.coverage) == (1.0, 5.0, pytest.approx(1 - 2 / 32))
    assert five.overlaps(nine) and not five.overlaps(median_interval([6.0] * 5))


def test_the_median_interval_covers_a_skewed_median_as_often_as_it_says():
    # Exponential timings (median ln 2): over 4000 draws of 9 the interval holds the
    # true median in 96.1% of them, whatever the distribution.
    gen = torch.Generator().manual_seed(0)
    draws = torch.empty(4000, 9).exponential_(generator=gen).tolist()
    hits = [median_interval(d).low <= math.log(2) <= median_interval(d).high for d in draws]
    assert sum(hits) / len(hits) == pytest.approx(1 - 2 * 10 / 512, abs=0.012)


SMALL_RUN = {
    "model.d_model": 32,
    "model.n_layers": 1,
    "model.n_heads": 2,
    "task.seq_len": 16,
    "task.batch_size": 4,
    "train.threads": 1,
}


def _peaks_by_dtype(value: dict[torch.dtype, float]):
    return lambda device, dtype: value[dtype]


def test_run_throughput_rows_are_medians_with_intervals_and_go_to_csv(tmp_path):
    configs = [
        ("base", build_run_config(overrides=SMALL_RUN)),
        ("encdec", build_run_config(overrides={**SMALL_RUN, "model.arch": "encoder_decoder"})),
    ]
    out = tmp_path / "tp.csv"
    rows = run_throughput(
        configs,
        steps=1,
        warmup=1,
        csv_path=out,
        rounds=5,
        measure_peak=_peaks_by_dtype({torch.float32: 1e10}),
        cache_path=tmp_path / "peak.json",
    )
    assert [r["name"] for r in rows] == ["base", "encdec"]
    for (_, cfg), r in zip(configs, rows, strict=True):
        tokens = 4 * 16 * (2 if cfg.model.arch == "encoder_decoder" else 1)
        assert r["rounds"] == 5 and r["interval_coverage"] == pytest.approx(1 - 2 / 32)
        assert r["tokens_per_sec_low"] <= r["tokens_per_sec"] <= r["tokens_per_sec_high"]
        # the FLOPs are the callback's (FlopCounterMode), which follow 6N + 12 L d T
        assert r["flops_per_token"] == pytest.approx(model_flops_per_token(cfg.model, 16), 1e-3)
        assert r["tokens_per_sec"] == pytest.approx(tokens / r["step_time"])
        assert r["flops_per_sec"] == pytest.approx(r["flops_per_token"] * r["tokens_per_sec"])
        assert r["frac_peak"] == pytest.approx(r["flops_per_sec"] / 1e10)
        assert r["frac_peak_low"] <= r["frac_peak"] <= r["frac_peak_high"]
        assert r["infer_tokens_per_sec"] > 0 and r["peak_mem_mb"] > 0
    with out.open() as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["base", "encdec"]
    table = format_table(rows)
    assert table.splitlines()[0].split()[:2] == ["name", "params"]
    assert "base" in table and "encdec" in table and "fp32 10.0 GFLOP/s" in table
    assert "median of 5 interleaved rounds" in table


def test_each_row_is_divided_by_the_peak_of_its_own_dtype(tmp_path):
    # An fp32 row next to a bf16 one: each gets its dtype's peak, not the other's.
    configs = [
        ("fp32", build_run_config(overrides=SMALL_RUN)),
        ("bf16", build_run_config(overrides={**SMALL_RUN, "train.precision": "bf16-mixed"})),
    ]
    peaks = {torch.float32: 1e10, torch.bfloat16: 4e10}
    rows = run_throughput(
        configs,
        steps=1,
        warmup=1,
        rounds=5,
        measure_peak=_peaks_by_dtype(peaks),
        cache_path=tmp_path / "peak.json",
    )
    assert [(r["peak_dtype"], r["peak_flops"]) for r in rows] == [("fp32", 1e10), ("bf16", 4e10)]
    for r in rows:
        assert r["frac_peak"] == pytest.approx(r["flops_per_sec"] / r["peak_flops"])
    assert "fp32 10.0 GFLOP/s" in format_table(rows) and "bf16 40.0 GFLOP/s" in format_table(rows)


def test_configs_are_interleaved_in_rotated_order():
    assert [round_order(3, r) for r in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    with pytest.raises(ValueError, match="at least 5"):
        run_throughput([("base", build_run_config(overrides=SMALL_RUN))], rounds=4)


def test_reversing_the_configs_keeps_their_ranking_within_the_intervals(tmp_path):
    # Three sizes whose costs differ by large factors; wherever one run tells two
    # configs apart (intervals disjoint), the reversed run must not rank them the
    # other way round, and the smallest and largest must be told apart in both.
    sizes = {"s": (16, 1), "m": (64, 2), "l": (128, 4)}
    configs = [
        (name, build_run_config(overrides={**SMALL_RUN, "model.d_model": d, "model.n_layers": n}))
        for name, (d, n) in sizes.items()
    ]
    kw = {"steps": 2, "warmup": 1, "rounds": 9, "measure_peak": lambda d, t: 1e10}
    forward = {r["name"]: r for r in run_throughput(configs, cache_path=tmp_path / "a", **kw)}
    backward = {
        r["name"]: r for r in run_throughput(configs[::-1], cache_path=tmp_path / "b", **kw)
    }

    def apart(rows, a, b):  # +1: a faster, -1: b faster, 0: not told apart
        if rows[a]["tokens_per_sec_low"] > rows[b]["tokens_per_sec_high"]:
            return 1
        if rows[a]["tokens_per_sec_high"] < rows[b]["tokens_per_sec_low"]:
            return -1
        return 0

    for a, b in [("s", "m"), ("m", "l"), ("s", "l")]:
        assert apart(forward, a, b) * apart(backward, a, b) >= 0, (a, b)
    assert apart(forward, "s", "l") == apart(backward, "s", "l") == 1


def test_the_command_and_the_callback_share_the_peak_and_the_flops(tmp_path):
    # For one config, bench throughput divides by the same peak and counts the same
    # FLOPs per batch as the run-time callback (the cause of 1.3% vs 41% MFU before).
    cache = tmp_path / "peak.json"
    cache.write_text(json.dumps({peak.cache_key("cpu", "fp32"): 4e10}))
    tp = ThroughputDiagnostics(DiagnosticsConfig(), warmup=1, window=2, cache_path=cache)
    trainer = _fit(tmp_path, 3, tp)
    cfg = trainer.lightning_module.cfg
    assert row_peak(cfg, torch.device("cpu"), cache_path=cache) == (tp.peak, tp.peak_source)
    batch = {"input_ids": torch.zeros(4, 8, dtype=torch.long)}
    assert flops_per_batch(cfg.model, batch) == tp.flops_per_batch


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "auto", 989.4e12),  # auto on GPU: bf16-mixed
        ("NVIDIA A100-SXM4-80GB", "bf16-mixed", 312e12),
        ("NVIDIA L4", "auto", 121e12),
        ("NVIDIA A100-SXM4-80GB", "32-true", 19.5e12),  # an fp32 row: the fp32 peak
    ],
)
def test_on_a_gpu_mfu_is_against_the_detected_gpus_dense_peak(
    monkeypatch, name, precision, expected
):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    cfg = build_run_config(overrides={**SMALL_RUN, "train.precision": precision})
    got = row_peak(cfg, torch.device("cuda"), measure=lambda d, t: pytest.fail("measured"))
    assert got == (expected, "table")


def test_a_gpu_the_table_lacks_gets_lightnings_figure(monkeypatch):
    from lightning.fabric.utilities.throughput import _CUDA_FLOPS

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA RTX A6000")
    cfg = build_run_config(overrides=SMALL_RUN)
    got = row_peak(cfg, torch.device("cuda"), measure=lambda d, t: pytest.fail("measured"))
    assert got == (float(_CUDA_FLOPS["a6000"][torch.bfloat16]), "lightning")
