"""train.precision: auto picks bf16 autocast only where it is faster, says why, and the
diagnostics that need float32 compute in float32 under a bf16 run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.model import build_model
from bench.training.matmul_speed import (
    AttentionShape,
    LinearShape,
    Workload,
    cached_speedup,
    default_cache_path,
    measure_speedup,
    workload_of,
)
from bench.training.precision import BF16_MIN_SPEEDUP, choose_precision, run_workload


def _never(*args: object) -> tuple[float, bool]:
    raise AssertionError("no measurement expected")


def _measured(value: float, cached: bool = False):
    return lambda cfg: (value, cached)


# ----------------------------------------------------------------------------- the decision


def test_auto_on_a_gpu_with_bf16_picks_bf16_mixed_without_measuring(tiny) -> None:
    cfg = tiny(**{"train.precision": "auto"})
    choice = choose_precision(cfg, "gpu", gpu_supports_bf16=lambda: True, speedup=_never)
    assert choice.precision == "bf16-mixed"
    assert "supports bf16" in choice.reason


def test_auto_on_a_gpu_without_bf16_falls_back_to_fp32(tiny) -> None:
    cfg = tiny(**{"train.precision": "auto"})
    choice = choose_precision(cfg, "gpu", gpu_supports_bf16=lambda: False, speedup=_never)
    assert choice.precision == "32-true"
    assert "no bf16" in choice.reason


def test_auto_on_cpu_picks_bf16_when_measured_faster_at_the_runs_shapes(tiny) -> None:
    cfg = tiny(**{"train.precision": "auto"})
    choice = choose_precision(cfg, "cpu", speedup=_measured(1.5))
    assert choice.precision == "bf16-mixed"
    assert choice.bf16_speedup == 1.5
    assert "1.50x" in choice.reason and "measured now" in choice.reason


@pytest.mark.parametrize("speedup", [0.6, 1.0, BF16_MIN_SPEEDUP - 0.01])
def test_auto_on_cpu_keeps_fp32_when_bf16_is_slower_or_barely_faster(tiny, speedup) -> None:
    cfg = tiny(**{"train.precision": "auto"})
    choice = choose_precision(cfg, "cpu", speedup=_measured(speedup, cached=True))
    assert choice.precision == "32-true"
    assert f"{speedup:.2f}x" in choice.reason and "cached" in choice.reason
    assert choice.record() == {"value": "32-true", "reason": choice.reason, "bf16_speedup": speedup}


def test_auto_on_cpu_keeps_fp32_when_bf16_cannot_even_be_measured(tiny) -> None:
    def unsupported(cfg: object) -> tuple[float, bool]:
        raise RuntimeError("no bf16 kernel")

    choice = choose_precision(tiny(**{"train.precision": "auto"}), "cpu", speedup=unsupported)
    assert choice.precision == "32-true"
    assert "no bf16 kernel" in choice.reason


@pytest.mark.parametrize("setting", ["32-true", "bf16-mixed"])
def test_a_set_precision_is_kept_and_nothing_is_measured(tiny, setting) -> None:
    cfg = tiny(**{"train.precision": setting})
    for accelerator in ("cpu", "gpu"):
        choice = choose_precision(cfg, accelerator, gpu_supports_bf16=lambda: False, speedup=_never)
        assert choice.precision == setting
        assert choice.record() == {"value": setting, "reason": f"train.precision={setting} (set)"}


@pytest.mark.parametrize("recorded", ["32-true", "bf16-mixed"])
def test_a_resumed_auto_run_keeps_the_precision_it_started_in(tiny, tmp_path, recorded) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"precision": {"value": recorded}}))
    cfg = tiny(**{"train.precision": "auto"})
    choice = choose_precision(cfg, "cpu", resume=tmp_path, speedup=_never)
    assert choice.precision == recorded
    assert "as chosen when the run started" in choice.reason


def test_a_resumed_run_without_a_recorded_precision_decides_again(tiny, tmp_path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"seed": 0}))  # an older run
    choice = choose_precision(
        tiny(**{"train.precision": "auto"}), "cpu", resume=tmp_path, speedup=lambda cfg: (0.5, True)
    )
    assert choice.precision == "32-true"
    assert choice.bf16_speedup == 0.5


# ----------------------------------------------------------------------------- the measurement


def test_the_workload_is_every_linear_and_attention_of_the_model(tiny) -> None:
    overrides = {"model.d_model": 32, "model.d_ff": 48, "model.n_heads": 2, "model.n_layers": 2}
    cfg = tiny(**overrides, **{"model.ffn": "gelu", "model.vocab_size": 20})
    with torch.device("meta"):
        model = build_model(cfg.model)
    tokens = 4 * 8  # batch x sequence
    assert dict(workload_of(model, batch_size=4, seq_len=8).shapes) == {
        LinearShape(tokens, 32, 3 * 32): 2,  # fused q/k/v, one a layer
        LinearShape(tokens, 32, 32): 2,  # attention output
        LinearShape(tokens, 32, 48): 2,  # FFN in
        LinearShape(tokens, 48, 32): 2,  # FFN out
        LinearShape(tokens, 32, 20): 1,  # LM head
        AttentionShape(4, 2, 8, 8, 16, True): 2,  # causal self-attention, one a layer
    }


def test_an_encoder_decoder_has_causal_decoder_and_bidirectional_encoder_attention(tiny) -> None:
    cfg = tiny(**{"model.arch": "encoder_decoder", "model.n_layers": 1, "model.vocab_size": 20})
    with torch.device("meta"):
        model = build_model(cfg.model)
    attention = {s: n for s, n in workload_of(model, 2, 8).shapes if isinstance(s, AttentionShape)}
    assert {(s.causal, n) for s, n in attention.items()} == {(True, 1), (False, 2)}


def test_measure_speedup_times_both_precisions_at_a_real_shape() -> None:
    workload = Workload(((LinearShape(16, 8, 8), 2), (AttentionShape(1, 2, 4, 4, 4, True), 1)))
    value = measure_speedup(workload, rounds=1, chunk=0.001)
    assert np.isfinite(value) and value > 0


def test_the_speedup_is_measured_once_per_workload_and_threads_then_read_back(tmp_path) -> None:
    calls: list[Workload] = []

    def measure(workload: Workload, device: torch.device) -> float:
        calls.append(workload)
        return 0.8

    small = Workload(((LinearShape(16, 8, 8), 1),))
    large = Workload(((LinearShape(64, 8, 8), 1),))
    cache = tmp_path / "speed.json"
    assert cached_speedup(small, threads=1, cache_path=cache, measure=measure) == (0.8, False)
    assert cached_speedup(small, threads=1, cache_path=cache, measure=measure) == (0.8, True)
    assert len(calls) == 1
    cached_speedup(large, threads=1, cache_path=cache, measure=measure)  # other shapes
    cached_speedup(small, threads=2, cache_path=cache, measure=measure)  # other threads
    assert len(calls) == 3
    assert len(json.loads(cache.read_text())) == 3


def test_the_cache_lives_in_the_user_cache_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "bench" / "bf16_speedup.json"


# ----------------------------------------------------------------------------- real runs


def _seed_cache(cfg, value: float) -> None:
    """What an earlier run measured for this config's shapes (bench's cache, in the test's dir)."""
    from bench.training.prepare import prepare

    fp32 = cfg.model_copy(deep=True)
    fp32.train.precision = "32-true"
    resolved = prepare(fp32).cfg  # the task's vocabulary, without measuring anything
    cached_speedup(
        run_workload(resolved), threads=resolved.train.threads, measure=lambda w, d: value
    )


@pytest.mark.parametrize(("speedup", "expected"), [(1.6, "bf16-mixed"), (0.7, "32-true")])
def test_a_run_with_auto_uses_the_cached_choice_records_it_and_prints_it(
    tiny, tmp_path, capsys, monkeypatch, speedup, expected
) -> None:
    from bench.training.run import train_run

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # this test's cache alone
    run_dir = tmp_path / "run"
    cfg = tiny(
        **{
            "train.precision": "auto",
            "train.max_steps": 2,
            "train.progress_bar": None,  # piped: plain lines, the header first
            "tracking.run_dir": str(run_dir),
        }
    )
    _seed_cache(cfg, speedup)
    result = train_run(cfg)
    assert result.status == "completed"
    recorded = json.loads((run_dir / "manifest.json").read_text())["precision"]
    assert recorded["value"] == expected
    assert recorded["bf16_speedup"] == pytest.approx(speedup)
    assert "(cached)" in recorded["reason"]
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
    assert shown == [f"precision: {expected} ({recorded['reason']})"]


def test_the_diagnostics_compute_in_float32_under_a_bf16_run(tiny, tmp_path, monkeypatch) -> None:
    """Every Linear's output dtype, by which part of the run called it: training is bf16,
    the Hessian, the noise scale and the landscape are float32."""
    import lightning as L

    import bench.diagnostics.hessian.callback as hessian_callback
    import bench.diagnostics.landscape as landscape
    from bench.diagnostics.gradients.callback import GradientDiagnostics
    from bench.training.run import train_run

    phase = ["training"]
    seen: dict[str, set[torch.dtype]] = {}

    def during(name: str, fn):
        def wrapped(*args, **kwargs):
            phase.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                phase.pop()

        return wrapped

    monkeypatch.setattr(
        hessian_callback, "hessian_analysis", during("hessian", hessian_callback.hessian_analysis)
    )
    monkeypatch.setattr(
        GradientDiagnostics, "_measure_noise", during("noise", GradientDiagnostics._measure_noise)
    )
    monkeypatch.setattr(
        landscape, "landscape_report", during("landscape", landscape.landscape_report)
    )

    class RecordDtypes(L.Callback):
        def setup(self, trainer, pl_module, stage) -> None:
            for m in pl_module.modules():
                if isinstance(m, nn.Linear):
                    m.register_forward_hook(
                        lambda mod, inp, out: seen.setdefault(phase[-1], set()).add(out.dtype)
                    )

    run_dir = tmp_path / "run"
    cfg = tiny(
        **{
            "train.precision": "bf16-mixed",
            "train.max_steps": 4,
            "train.val_every": 4,
            "tracking.run_dir": str(run_dir),
            "diagnostics.gradients_every": 2,
            "diagnostics.hessian.enabled": True,
            "diagnostics.hessian.steps": [0.0],
            "diagnostics.hessian.iters": 2,
            "diagnostics.landscape.enabled": True,
            "diagnostics.landscape.resolution": 3,
            "diagnostics.landscape.batches": 1,
        }
    )
    result = train_run(cfg, callbacks=[RecordDtypes()])
    assert result.status == "completed", result
    assert torch.bfloat16 in seen["training"]  # the run really trained under bf16 autocast
    for name in ("hessian", "noise", "landscape"):
        assert seen[name] == {torch.float32}, name
    diag = run_dir / "diagnostics"
    assert str(np.load(diag / "hessian_step0.npz")["compute_dtype"]) == "float32"
    assert str(np.load(diag / "landscape_random.npz")["compute_dtype"]) == "float32"
    assert str(np.load(diag / "gradients.npz")["noise_scale_dtype"]) == "float32"


def test_header_names_the_precision_and_why(tiny, tmp_path: Path) -> None:
    from bench.training.progress_lines import header_lines

    lines = header_lines(tiny(), tmp_path / "run", precision="32-true (auto on CPU: ...)")
    assert lines[1] == "precision: 32-true (auto on CPU: ...)"
    assert lines[2].startswith("config (set): ")
