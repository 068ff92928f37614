"""RoPE frequency scaling (PI, NTK-aware, YaRN) and the FIRE bias, against their papers.

Each reference below is written from the paper's equations (or its published code)
in float64, separately from ``bench.model.positional``: the frequencies, and the
forward and gradient of attention on the same weights. Then the paths: dynamic
scaling changes nothing up to the training length, a decoder and an encoder-decoder,
grouped-query attention, µP, FLOP counting against torch's counter, a run that
evaluates at 2x and 4x and resumes from its checkpoint.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, ModelConfig, build_run_config
from bench.diagnostics.batches import batch_tokens
from bench.diagnostics.throughput.flops import measured_flops_per_batch, model_flops_per_token
from bench.model import build_model
from bench.model.attention import attention_inputs
from bench.model.positional import FIRE, RoPE

pytestmark = pytest.mark.usefixtures("one_thread")

L_TRAIN = 16  # the training length the scalings extend from


def _cfg(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, n_layers=1, max_len=128, vocab_size=40)
    base.update(kw)
    return ModelConfig(**base)


def _rope(kind: str, factor: float | None = None, **kw) -> ModelConfig:
    if kind == "none":
        return _cfg(pos_encoding="rope", **kw)
    return _cfg(
        pos_encoding="rope",
        rope_scaling=kind,
        rope_scaling_factor=factor,
        rope_original_len=L_TRAIN,
        **kw,
    )


# ----------------------------------------------------------------------------- references


def paper_frequencies(kind: str, dim: int, base: float, s: float, L: int) -> tuple[list, float]:
    """(theta'_i for i < dim/2, sqrt(1/t)) from the papers, in float64 Python."""
    theta = [base ** (-2 * i / dim) for i in range(dim // 2)]
    if kind == "none" or s == 1:
        return theta, 1.0
    if kind == "pi":  # Chen et al. 2023: m -> m/s
        return [t / s for t in theta], 1.0
    if kind == "ntk":  # bloc97: b' = b s^(|D|/(|D|-2))
        b2 = base * s ** (dim / (dim - 2))
        return [b2 ** (-2 * i / dim) for i in range(dim // 2)], 1.0
    assert kind == "yarn"  # Peng et al. 2023, Eqs. 17-22, alpha 1, beta 32
    alpha, beta = 1.0, 32.0
    out = []
    for i, t in enumerate(theta):
        wavelength = 2 * math.pi * base ** (2 * i / dim)
        r = L / wavelength
        gamma = 0.0 if r < alpha else 1.0 if r > beta else (r - alpha) / (beta - alpha)
        out.append((1 - gamma) * t / s + gamma * t)
    return out, 0.1 * math.log(s) + 1


def reference_code_yarn(dim: int, base: float, s: float, L: int) -> list[float]:
    """jquesnelle/yarn ``LlamaYaRNScaledRotaryEmbedding.yarn`` (beta_fast 32, beta_slow 1):
    the ramp runs linearly over the pair index between floor/ceil bounds."""

    def correction_dim(rot: float) -> float:
        return (dim * math.log(L / (rot * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(correction_dim(32)), 0)
    high = min(math.ceil(correction_dim(1)), dim - 1)
    high = high + 0.001 if low == high else high
    out = []
    for i in range(dim // 2):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        extrapolate = 1 - ramp
        pos_freq = base ** (2 * i / dim)
        out.append((1 / (s * pos_freq)) * (1 - extrapolate) + (1 / pos_freq) * extrapolate)
    return out


def reference_attention(x, w_qkv, b_qkv, w_out, b_out, H, KV, theta, mscale):
    """Causal self-attention in float64 with RoPE as a complex rotation of the pairs
    (channel i, i + D/2), q and k multiplied by ``mscale`` (YaRN's sqrt(1/t))."""
    B, T, _ = x.shape
    hd = w_qkv.shape[0] // (H + 2 * KV)
    qkv = x @ w_qkv.T + b_qkv
    q, k, v = qkv.split([H * hd, KV * hd, KV * hd], dim=-1)
    q = q.view(B, T, H, hd).transpose(1, 2)
    k = k.view(B, T, KV, hd).transpose(1, 2)
    v = v.view(B, T, KV, hd).transpose(1, 2)
    half = len(theta)
    pos = torch.arange(T, dtype=torch.float64)
    phase = torch.polar(torch.ones(T, half, dtype=torch.float64), pos[:, None] * theta[None])

    def rotate(z):
        c = torch.complex(z[..., :half], z[..., half : 2 * half]) * phase
        return torch.cat([c.real, c.imag, z[..., 2 * half :]], dim=-1) * mscale

    q, k = rotate(q), rotate(k)
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    att = scores.masked_fill(future, float("-inf")).softmax(-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
    return y @ w_out.T + b_out


def fire_reference(T, c, mult, L0, w1, b1, w2, b2, eps=1e-6):
    """Li et al. 2023, App. C's ``FIRE.forward``: bias [H, T, T] in float64."""
    positions = torch.arange(T, dtype=torch.float64)
    rel_distance = positions[:, None] - positions[None, :]
    threshold = torch.abs(mult * L0)
    pos_normalizer = torch.max(positions, threshold)[:, None]
    rel_distance = torch.log(torch.abs(c * rel_distance) + 1)
    pos_normalizer = torch.log(torch.abs(c * pos_normalizer) + 1) + eps
    normalized = (rel_distance / pos_normalizer)[..., None]
    hidden = torch.relu(normalized @ w1.T + b1)
    return (hidden @ w2.T + b2).permute(2, 0, 1)


# ----------------------------------------------------------------------------- frequencies


@pytest.mark.parametrize("kind", ["pi", "ntk", "yarn"])
@pytest.mark.parametrize("s", [1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("head_dim,base", [(16, 10000.0), (32, 500.0)])
def test_fixed_factor_frequencies_equal_the_papers_equations(kind, s, head_dim, base):
    cfg = _rope(kind, s, d_model=2 * head_dim, rope_base=base)
    rope = RoPE(cfg, causal=True)
    theta, mscale = paper_frequencies(kind, head_dim, base, s, L_TRAIN)
    torch.testing.assert_close(rope.inv_freq.double(), torch.tensor(theta, dtype=torch.float64))
    assert rope.mscale == pytest.approx(mscale, rel=1e-12)


@pytest.mark.parametrize("kind", ["pi", "ntk", "yarn"])
def test_dynamic_scaling_uses_length_over_training_length_past_it_and_nothing_before(kind):
    rope = RoPE(_rope(kind), causal=True)
    for t in (1, 8, L_TRAIN):  # up to the training length: plain RoPE, bit for bit
        rot = rope.rotary(t, torch.device("cpu"))
        ref = RoPE(_cfg(pos_encoding="rope"), causal=True).rotary(t, torch.device("cpu"))
        assert rot.mscale == 1.0
        torch.testing.assert_close(rot.cos, ref.cos, atol=0, rtol=0)
        torch.testing.assert_close(rot.sin, ref.sin, atol=0, rtol=0)
    for t in (2 * L_TRAIN, 4 * L_TRAIN, 3 * L_TRAIN + 5):
        theta, mscale = paper_frequencies(kind, 16, 10000.0, t / L_TRAIN, L_TRAIN)
        angles = torch.outer(torch.arange(t, dtype=torch.float64), torch.tensor(theta))
        rot = rope.rotary(t, torch.device("cpu"))
        torch.testing.assert_close(rot.cos.double(), angles.cos(), atol=2e-6, rtol=0)
        torch.testing.assert_close(rot.sin.double(), angles.sin(), atol=2e-6, rtol=0)
        assert rot.mscale == pytest.approx(mscale)


def test_yarn_agrees_with_its_reference_code_outside_the_ramp_and_says_where_it_differs():
    # The paper ramps gamma linearly in r = L / lambda; the reference code linearly in the
    # pair index between rounded bounds. Pairs wholly interpolated or wholly kept agree.
    dim, base, L, s = 128, 10000.0, 2048, 8.0  # Llama-2's head and context
    paper, _ = paper_frequencies("yarn", dim, base, s, L)
    code = reference_code_yarn(dim, base, s, L)
    r = [L / (2 * math.pi * base ** (2 * i / dim)) for i in range(dim // 2)]
    outside = [i for i in range(dim // 2) if r[i] <= 1 or r[i] >= 32]
    assert any(r[i] >= 32 for i in outside) and any(r[i] <= 1 for i in outside)
    for i in outside:
        assert paper[i] == pytest.approx(code[i], rel=1e-12), i
    cfg = ModelConfig(
        d_model=dim * 2,
        n_heads=2,
        pos_encoding="rope",
        rope_scaling="yarn",
        rope_scaling_factor=s,
        rope_original_len=L,
        max_len=16,
    )
    bench = RoPE(cfg, causal=True).inv_freq.double().tolist()
    assert bench == pytest.approx(paper, rel=1e-6)
    assert bench != pytest.approx(code, rel=1e-3)  # inside the ramp: the paper's, not the code's


def test_yarn_temperature_is_applied_once_to_queries_and_keys_so_scores_get_its_square():
    rope = RoPE(_rope("yarn", 4.0), causal=True)
    rot = rope.rotary(5, torch.device("cpu"))
    q = torch.randn(1, 1, 5, 16)
    m = 0.1 * math.log(4.0) + 1
    plain = type(rot)(rot.cos, rot.sin)  # the same rotation without the temperature
    torch.testing.assert_close(rot(q), plain(q) * m)
    scores, plain_scores = rot(q) @ rot(q).transpose(-1, -2), plain(q) @ plain(q).transpose(-1, -2)
    torch.testing.assert_close(scores, plain_scores * m**2)


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("kind", ["none", "pi", "ntk", "yarn"])
@pytest.mark.parametrize("n_kv_heads", [2, 1])
def test_scaled_rope_attention_forward_and_gradient_equal_the_reference(kind, n_kv_heads):
    torch.manual_seed(0)
    cfg = _rope(kind, n_heads=2, n_kv_heads=n_kv_heads, d_model=32)
    model = build_model(cfg)
    stack, attn = model, model.blocks[0].attn
    T = 4 * L_TRAIN  # past the training length: dynamic s = 4
    x = torch.randn(2, T, 32)
    inputs = attention_inputs(
        T, T, causal=True, device=x.device, rotary=stack.pos.rotary(T, x.device)
    )
    out = attn(x, inputs)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()

    theta, mscale = paper_frequencies(kind, 16, 10000.0, 4.0, L_TRAIN)
    params = {
        n: p.detach().double().requires_grad_()
        for n, p in [
            ("w_qkv", attn.qkv.weight),
            ("b_qkv", attn.qkv.bias),
            ("w_out", attn.out.weight),
            ("b_out", attn.out.bias),
        ]
    }
    ref = reference_attention(
        x.double(), **params, H=2, KV=n_kv_heads, theta=torch.tensor(theta), mscale=mscale
    )
    (ref * weight.double()).sum().backward()
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(
        attn.qkv.weight.grad.double(), params["w_qkv"].grad, atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        attn.out.weight.grad.double(), params["w_out"].grad, atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("arch", ["decoder", "encoder_decoder"])
@pytest.mark.parametrize("kind", ["pi", "ntk", "yarn"])
def test_a_dynamically_scaled_model_is_plain_rope_up_to_the_training_length_only(arch, kind):
    def logits(cfg, t):
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        ids = torch.randint(0, 40, (2, t), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return model(ids) if arch == "decoder" else model(ids, ids)

    plain = _cfg(pos_encoding="rope", arch=arch, n_kv_heads=1)
    scaled = _rope(kind, arch=arch, n_kv_heads=1)
    torch.testing.assert_close(logits(scaled, L_TRAIN), logits(plain, L_TRAIN), atol=0, rtol=0)
    longer = logits(scaled, 3 * L_TRAIN), logits(plain, 3 * L_TRAIN)
    assert not torch.allclose(*longer, atol=1e-4)
    # the first L positions of a causal decoder see the same keys, but rotated differently
    assert not torch.allclose(longer[0][:, 1:L_TRAIN], longer[1][:, 1:L_TRAIN], atol=1e-4)


def test_a_fixed_factor_scales_at_every_length_as_the_fine_tuned_models_run():
    # below the training length too: position m -> m / 2 (the models PI extends are
    # fine-tuned, then run, at their factor)
    pi = RoPE(_rope("pi", 2.0), causal=True).rotary(8, torch.device("cpu"))
    theta = RoPE(_cfg(pos_encoding="rope"), causal=True).inv_freq
    angles = torch.outer(torch.arange(8.0) / 2, theta)
    torch.testing.assert_close(pi.cos, angles.cos())
    torch.testing.assert_close(pi.sin, angles.sin())


def test_mup_builds_and_runs_scaled_rope_and_fire():
    for cfg in (_rope("yarn"), _cfg(pos_encoding="fire")):
        model = build_model(cfg, "mup", 16)
        out = model(torch.randint(0, 40, (2, 3 * L_TRAIN)))
        assert torch.isfinite(out).all()


# ----------------------------------------------------------------------------- FIRE


def test_fire_bias_forward_and_gradient_equal_the_papers_code():
    torch.manual_seed(0)
    fire = FIRE(_cfg(pos_encoding="fire", fire_threshold=8.0, n_heads=4), causal=True)
    with torch.no_grad():  # away from the init, so every branch of max(L, i) is exercised
        fire.c.fill_(0.7)
        fire.threshold_multiplier.fill_(1.3)
    T = 24
    bias = fire.bias(T, T, torch.device("cpu"))
    weight = torch.randn_like(bias)
    (bias * weight).sum().backward()

    lin1, lin2 = fire.mlp[0], fire.mlp[2]
    ref_params = [
        torch.tensor(0.7, dtype=torch.float64, requires_grad=True),
        torch.tensor(1.3, dtype=torch.float64, requires_grad=True),
    ] + [
        p.detach().double().requires_grad_()
        for p in (lin1.weight, lin1.bias, lin2.weight, lin2.bias)
    ]
    c, mult, w1, b1, w2, b2 = ref_params
    ref = fire_reference(T, c, mult, 8.0, w1, b1, w2, b2)
    (ref * weight.double()).sum().backward()
    assert bias.shape == (4, T, T)
    torch.testing.assert_close(bias.double(), ref, atol=1e-5, rtol=1e-5)
    ours = [fire.c, fire.threshold_multiplier, lin1.weight, lin1.bias, lin2.weight, lin2.bias]
    for p, r in zip(ours, ref_params, strict=True):
        torch.testing.assert_close(p.grad.double(), r.grad, atol=1e-4, rtol=1e-4)


def test_fire_maps_every_past_distance_into_the_unit_interval_at_any_length():
    fire = FIRE(_cfg(pos_encoding="fire", fire_threshold=4.0), causal=True)
    seen = []
    fire.mlp[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    for T in (16, 256):
        fire.bias(T, T, torch.device("cpu"))
        x = seen.pop()[..., 0]
        past = torch.ones(T, T, dtype=torch.bool).tril()
        assert x[past].min() >= 0 and x[past].max() <= 1 + 1e-5
        # progressive interpolation: a query's farthest key (j = 0) maps to ~1 past L
        assert x[T - 1, 0] == pytest.approx(1.0, abs=1e-4)


def test_fire_is_learned_in_a_decoder_with_gqa():
    torch.manual_seed(0)
    model = build_model(_cfg(pos_encoding="fire", n_heads=4, n_kv_heads=2, n_layers=2))
    model(torch.randint(0, 40, (2, 20))).logsumexp(-1).mean().backward()
    fire = model.pos
    assert isinstance(fire, FIRE)
    for p in (fire.c, fire.threshold_multiplier, *fire.mlp.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(fire.mlp[2].weight.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize(
    "axes,t",
    [
        ({"pos_encoding": "rope", "rope_scaling": "yarn", "rope_original_len": 8}, 32),
        ({"pos_encoding": "rope", "rope_scaling": "ntk", "n_kv_heads": 1}, 24),
        ({"pos_encoding": "fire"}, 24),
        ({"pos_encoding": "fire", "n_kv_heads": 2, "fire_hidden": 8}, 40),
    ],
)
def test_analytic_flops_equal_torchs_flop_counter(axes, t):
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, max_len=64, vocab_size=50, **axes)
    batch = {"input_ids": torch.zeros(3, t, dtype=torch.long)}
    analytic = model_flops_per_token(cfg, t, batch_size=3) * batch_tokens(batch)
    assert measured_flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3)


def test_fire_flops_are_counted_once_a_batch():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=50, pos_encoding="fire")
    plain = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=50, pos_encoding="alibi")
    extra = [
        measured_flops_per_batch(cfg, {"input_ids": torch.zeros(b, 16, dtype=torch.long)})
        - measured_flops_per_batch(plain, {"input_ids": torch.zeros(b, 16, dtype=torch.long)})
        for b in (1, 4)
    ]
    assert extra[0] == extra[1] == 3 * 2 * 16 * 16 * (32 + 32 * 4)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"pos_encoding": "alibi", "rope_scaling": "yarn"}, "allowed: pos_encoding=rope"),
        ({"pos_encoding": "rope", "rope_scaling_factor": 2.0}, "only read with model.rope_scaling"),
        ({"pos_encoding": "rope", "rope_original_len": 32}, "only read with model.rope_scaling"),
        ({"pos_encoding": "rope", "rope_scaling": "ntk", "rope_fraction": 0.0625}, "D >= 4"),
        ({"pos_encoding": "rope", "rope_scaling": "yarn", "yarn_beta": 0.5}, "must exceed"),
        ({"pos_encoding": "rope", "rope_scaling": "pi", "rope_scaling_factor": 0.5}, "factor"),
        ({"pos_encoding": "fire", "arch": "encoder_decoder"}, "allowed: arch=decoder"),
    ],
)
def test_combinations_the_methods_do_not_define_are_one_line_config_errors(overrides, words):
    args = {f"model.{k}": v for k, v in overrides.items()}
    with pytest.raises(ConfigError, match=words) as e:
        build_run_config(overrides=args)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- a run


def test_a_yarn_run_evaluates_at_2x_and_4x_from_its_training_length_and_resumes(tiny):
    from bench.training.run import train_run

    overrides = {
        "task.name": "text",
        "task.seq_len": 16,
        "task.max_bytes": 50_000,
        "task.n_train": 128,
        "task.n_val": 4,
        "task.eval_scales": [1, 2, 4],
        "model.pos_encoding": "rope",
        "model.rope_scaling": "yarn",
        "model.max_len": 64,
        "train.max_steps": 6,
        "train.val_every": 6,
        "train.checkpoint_every": 3,
    }
    full = train_run(tiny(**overrides, **{"tracking.name": "full"}))
    assert full.status == "completed"
    for n in (16, 32, 64):
        assert math.isfinite(full.metrics[f"val/loss@{n}"])
    from bench.run import Run

    run = Run.load(full.run_dir)
    assert run.config["model"]["rope_original_len"] == 16  # the task's training length

    class Crash(Exception):
        pass

    from lightning.pytorch.callbacks import Callback

    class CrashAt4(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 4:
                raise Crash

    cfg = tiny(**overrides, **{"tracking.name": "crashed"})
    with pytest.raises(Crash):
        train_run(cfg, callbacks=[CrashAt4()])
    crashed = next(p for p in full.run_dir.parent.iterdir() if p.name.startswith("crashed"))
    resumed = train_run(cfg, resume=crashed)
    for key in ("val/loss@16", "val/loss@32", "val/loss@64"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], rel=1e-6), key
