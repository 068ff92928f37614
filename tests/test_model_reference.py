"""Every variant a claim compares computes what its paper defines (before ``bench reproduce``).

``Reference`` below is a second decoder written from the papers' equations with
plain torch, not from ``bench.model``: explicit per-head loops instead of
``scaled_dot_product_attention``, norms and activations from their formulas,
float64 throughout. Bench's weights (perturbed away from their init, so biases and
norm gains are not the identity) are copied into it by ``state_dict`` name and the
full model's logits (and, for two combinations, every gradient) must agree.

Sources of each reference piece:

- ALiBi: Press, Smith & Lewis 2022, Section 3, and the authors' fairseq code
  (github.com/ofirpress/attention_with_linear_biases, ``fairseq/models/transformer.py``,
  ``TransformerDecoder.__init__`` and ``buffered_future_mask``): no position embeddings;
  the bias added to head h's scores is ``slope_h * j`` for key position ``j``, the same
  for every query row ("softmax is invariant to translation"), plus the causal mask.
  The slopes are written from the paper's description: ``2^(-8i/n)``, i = 1..n, and for
  n not a power of two the 2^a-head slopes followed by the odd-indexed 2^(a+1)-head ones.
- Sinusoidal: Vaswani et al. 2017, eq. in Section 3.5, evaluated in float64.
- Learned positions: GPT-2 (Radford et al. 2019): a table row added per position.
- NoPE: Kazemnejad et al. 2023: a causal decoder with no position information at all.
- RoPE: Su et al. 2021, eq. 34: consecutive pairs ``(x_2i, x_2i+1)`` of each query/key
  head rotated by ``m * base^(-2i/d_head)``, computed as a complex product (as in Meta's
  LLaMA reference code). Bench rotates the half-split pairs ``(x_i, x_i+d/2)``
  (GPT-NeoX); that is the same function after permuting the q/k rows of each head,
  which is how the weights are copied.
- SwiGLU / ReLU / GELU: Shazeer 2020, eqs. 5-6: ``FFN_SwiGLU(x) = (Swish_1(xW) * xV) W2``
  (tested bias-free, as in the paper); ``FFN_ReLU = max(0, xW1) W2``; GELU in its erf form.
- QK-layernorm: Dehghani et al. 2023 (ViT-22B) and Wortsman et al. 2023: LayerNorm over
  the head dimension of each query and key head before the dot product, gain and bias
  shared by the heads.
- GQA / MQA: Ainslie et al. 2023, Section 2.2: the H query heads are split into G groups,
  each sharing one key head and one value head (G = 1: multi-query attention).
- Pre-/post-LN: Xiong et al. 2020, Fig. 1 (pre-LN with a final LayerNorm).
- RMSNorm: Zhang & Sennrich 2019, eq. 4: ``a_i / RMS(a) * g_i``, ``RMS(a) = sqrt(mean a^2)``
  (the epsilon inside the root, as torch's ``rms_norm``; the authors' torch code adds it
  outside), no re-centering, no bias.
- DeepNorm: Wang et al. 2022, Section 4 and Table 1: ``x = LN(alpha x + G(x))`` after
  every sublayer, decoder-only ``alpha = (2N)^(1/4)`` for N layers, no final norm.
- DyT: Zhu et al. 2025, eq. in Section 4 and the authors' ``dynamic_tanh.py``:
  ``gamma * tanh(alpha * x) + beta``, one scalar ``alpha`` a layer, in place of every
  norm (the final one too).
- Peri-LN: Kim et al. 2025, ``y = x + Norm(F(Norm(x)))`` around every sublayer, a
  final norm (bench's ``peri`` is its ``sandwich`` class: Ding et al. 2021).
- Mix-LN: Li et al. 2024: Post-LN in the first ``floor(0.25 L)`` layers, Pre-LN after,
  a final norm.
- Parallel block: GPT-J and PaLM (Chowdhery et al. 2022, Section 2):
  ``y = x + MLP(LN(x)) + Attention(LN(x))``, one LayerNorm shared by both branches.
- µP (``train.parameterization: mup``): Yang et al. 2022 (Tensor Programs V) and the
  ``mup`` README: attention scores ``q.k * c / d_head`` with ``c`` the square root of the
  base model's ``d_head`` (the README's 8 for a base ``d_head`` of 64), logits of the
  (tied) readout times ``base_width / width`` (``MuSharedReadout``), and the embedding
  scale held at the base width's ``sqrt(base_width)``.

A check that fails here is a finding about bench, not a tolerance to loosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.claims.spec import load_claim
from bench.config import ModelConfig
from bench.model import build_model

VOCAB, D, HEADS, LAYERS, T, MAX_LEN, BATCH = 20, 32, 4, 2, 12, 16, 3
EPS = 1e-5  # the LayerNorm epsilon of Ba et al.'s implementations (and torch's default)
# Max |difference| of logits (|logits| up to ~6) and gradients, in float64. Bench builds
# its sinusoid and rotation tables in float32 (errors 3e-7 and 7e-8 in the tables, ~1e-7 in
# the logits; with float64 tables the difference is 2e-15); everything else agrees to
# rounding (measured 2-3e-15).
EXACT = 1e-12
FLOAT32_TABLES = 1e-6


def tolerance(cfg: ModelConfig) -> float:
    return FLOAT32_TABLES if cfg.pos_encoding in ("sinusoidal", "rope") else EXACT


# ----------------------------------------------------------------------------- the reference


@dataclass(frozen=True)
class Spec:
    """What the reference computes; filled from a ModelConfig by ``spec_of``."""

    pos: str = "learned"  # alibi | sinusoidal | learned | nope | rope
    ffn: str = "gelu"  # gelu | relu | swiglu
    ffn_dim: int = 4 * D
    placement: str = "pre"  # pre | post | deepnorm | sandwich (= peri) | mixln
    norm: str = "layernorm"  # layernorm | rmsnorm | dyt
    parallel: bool = False  # GPT-J / PaLM: x + attn(N(x)) + ffn(N(x)), one norm
    mixln_post: int = 0  # Mix-LN: how many first layers are Post-LN
    norm_bias: bool = True  # the block and final norms' bias (LayerNorm with bias only)
    qk_norm: bool = False
    heads: int = HEADS
    kv_heads: int = HEADS
    d: int = D
    bias: bool = True
    embed_scale: float = 1.0
    rope_base: float = 10000.0
    grouping: str = "contiguous"  # contiguous (the paper) | strided (only to show it matters)
    attn_scale: float | None = None  # µP's c / d_head; None: 1/sqrt(d_head)
    readout_mult: float = 1.0  # µP's base_width / width


def ref_alibi_slopes(n: int) -> list[float]:
    """Press et al. 2022, Section 3: the geometric sequence ``2^(-8/n), 2^(-16/n), ..., 2^-8``;
    n not a power of two: the 2^a-head slopes, then the odd-indexed 2^(a+1)-head slopes."""
    p = 2 ** math.floor(math.log2(n))
    own = [2.0 ** (-8 * i / p) for i in range(1, p + 1)]
    between = [2.0 ** (-8 * i / (2 * p)) for i in range(1, 2 * p + 1, 2)]
    return own + between[: n - p]


def layer_norm(x: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """Ba et al. 2016: ``(x - mean) / sqrt(var + eps) * gain + bias`` over the last axis."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + EPS) * gain
    return y + bias if bias is not None else y


def dyt(x: Tensor, alpha: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """Zhu et al. 2025: ``gamma * tanh(alpha * x) + beta``, no statistic of ``x``."""
    y = torch.tanh(alpha * x) * gain
    return y + bias if bias is not None else y


def rms_norm(x: Tensor, gain: Tensor) -> Tensor:
    """Zhang & Sennrich 2019, eq. 4: ``x / sqrt(mean(x^2) + eps) * gain``, no centering."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * gain


class Reference(nn.Module):
    """A causal decoder LM with tied embeddings, written from the papers (module docstring)."""

    def __init__(self, spec: Spec, vocab: int = VOCAB, layers: int = LAYERS) -> None:
        super().__init__()
        s, self.spec = spec, spec
        hd, f = s.d // s.heads, s.ffn_dim
        self.hd = hd

        def p(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape, dtype=torch.float64))

        def b(*shape: int) -> nn.Parameter | None:
            return p(*shape) if s.bias else None

        self.tok = p(vocab, s.d)
        self.pos = p(MAX_LEN, s.d) if s.pos == "learned" else None
        self.layers = nn.ModuleList()
        for _ in range(layers):
            L = nn.Module()
            L.wq, L.bq = p(s.heads, hd, s.d), b(s.heads, hd)
            L.wk, L.bk = p(s.kv_heads, hd, s.d), b(s.kv_heads, hd)
            L.wv, L.bv = p(s.kv_heads, hd, s.d), b(s.kv_heads, hd)
            L.wo, L.bo = p(s.d, s.heads * hd), b(s.d)
            if s.qk_norm:
                L.qn_g, L.qn_b, L.kn_g, L.kn_b = p(hd), b(hd), p(hd), b(hd)
            L.w1, L.b1 = p(f, s.d), b(f)
            if s.ffn == "swiglu":
                L.v1, L.c1 = p(f, s.d), b(f)  # Shazeer's V
            L.w2, L.b2 = p(s.d, f), b(s.d)
            nb = b(s.d) if s.norm_bias else None
            L.n1_g, L.n1_b = p(s.d), nb
            if not s.parallel:
                L.n2_g, L.n2_b = p(s.d), b(s.d) if s.norm_bias else None
            if s.placement == "sandwich":  # the output norms
                L.n1o_g, L.n1o_b = p(s.d), b(s.d) if s.norm_bias else None
                L.n2o_g, L.n2o_b = p(s.d), b(s.d) if s.norm_bias else None
            if s.norm == "dyt":  # one alpha per DyT
                L.n1_a = p(1)
                if not s.parallel:
                    L.n2_a = p(1)
                if s.placement == "sandwich":
                    L.n1o_a, L.n2o_a = p(1), p(1)
            self.layers.append(L)
        if s.placement in ("pre", "sandwich", "mixln"):
            self.nf_g, self.nf_b = p(s.d), b(s.d) if s.norm_bias else None
            self.nf_a = p(1) if s.norm == "dyt" else None
        # Wang et al. 2022, Table 1, decoder-only: alpha = (2N)^(1/4)
        self.alpha = (2 * layers) ** 0.25 if s.placement == "deepnorm" else 1.0

    def norm(
        self, x: Tensor, gain: Tensor, bias: Tensor | None, alpha: Tensor | None = None
    ) -> Tensor:
        if self.spec.norm == "rmsnorm":
            return rms_norm(x, gain)
        if self.spec.norm == "dyt":
            assert alpha is not None
            return dyt(x, alpha, gain, bias)
        return layer_norm(x, gain, bias)

    def n(self, L: nn.Module, name: str, x: Tensor) -> Tensor:
        """Layer ``L``'s norm ``name`` (n1, n2, n1o, n2o) applied to ``x``."""
        return self.norm(
            x, getattr(L, name + "_g"), getattr(L, name + "_b"), getattr(L, name + "_a", None)
        )

    def positions(self, t: int) -> Tensor:
        """What is added to the token embeddings: ``[t, d]``."""
        if self.spec.pos == "learned":
            assert self.pos is not None
            return self.pos[:t]
        if self.spec.pos == "sinusoidal":
            d = self.spec.d
            pe = torch.zeros(t, d, dtype=torch.float64)
            for pos in range(t):
                for i in range(0, d, 2):
                    angle = pos / 10000 ** (i / d)
                    pe[pos, i] = math.sin(angle)
                    pe[pos, i + 1] = math.cos(angle)
            return pe
        return torch.zeros(t, self.spec.d, dtype=torch.float64)

    def score_bias(self, t: int) -> Tensor:
        """Causal mask plus ALiBi's per-key bias ``slope_h * j``: ``[H, t, t]``."""
        causal = torch.full((t, t), -math.inf, dtype=torch.float64).triu(1)
        bias = causal.expand(self.spec.heads, t, t)
        if self.spec.pos == "alibi":
            slopes = torch.tensor(ref_alibi_slopes(self.spec.heads), dtype=torch.float64)
            keys = torch.arange(t, dtype=torch.float64)
            bias = bias + slopes[:, None, None] * keys[None, None, :]
        return bias

    def rotate(self, x: Tensor) -> Tensor:
        """Su et al. eq. 34 on ``[B, heads, T, hd]``: pair (2i, 2i+1) times ``e^(i m theta_i)``."""
        t, hd = x.shape[-2], x.shape[-1]
        theta = self.spec.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        angles = torch.arange(t, dtype=torch.float64)[:, None] * theta[None, :]
        z = torch.view_as_complex(x.reshape(*x.shape[:-1], hd // 2, 2).contiguous())
        return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2)

    def attention(self, L: nn.Module, x: Tensor) -> Tensor:
        s = self.spec
        q = torch.einsum("btd,hed->bhte", x, L.wq)
        k = torch.einsum("btd,ged->bgte", x, L.wk)
        v = torch.einsum("btd,ged->bgte", x, L.wv)
        if s.bias:
            q, k, v = q + L.bq[:, None], k + L.bk[:, None], v + L.bv[:, None]
        if s.qk_norm:
            q, k = layer_norm(q, L.qn_g, L.qn_b), layer_norm(k, L.kn_g, L.kn_b)
        if s.pos == "rope":
            q, k = self.rotate(q), self.rotate(k)
        bias = self.score_bias(x.shape[1])
        group_size = s.heads // s.kv_heads
        heads = []
        for h in range(s.heads):
            g = h // group_size if s.grouping == "contiguous" else h % s.kv_heads
            scores = q[:, h] @ k[:, g].transpose(-1, -2)
            scores = scores / math.sqrt(self.hd) if s.attn_scale is None else scores * s.attn_scale
            scores = scores + bias[h]
            heads.append(torch.softmax(scores, dim=-1) @ v[:, g])
        y = torch.cat(heads, dim=-1) @ L.wo.T
        return y + L.bo if s.bias else y

    def ffn(self, L: nn.Module, x: Tensor) -> Tensor:
        s = self.spec
        h = x @ L.w1.T + (L.b1 if s.bias else 0)
        if s.ffn == "relu":
            h = torch.clamp_min(h, 0)
        elif s.ffn == "gelu":
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        else:
            h = h * torch.sigmoid(h) * (x @ L.v1.T + (L.c1 if s.bias else 0))
        y = h @ L.w2.T
        return y + L.b2 if s.bias else y

    def forward(self, ids: Tensor) -> Tensor:
        s = self.spec
        x = self.tok[ids] * s.embed_scale + self.positions(ids.shape[1])
        for i, L in enumerate(self.layers):
            post = s.placement in ("post", "deepnorm") or (
                s.placement == "mixln" and i < s.mixln_post
            )
            if s.parallel:  # GPT-J / PaLM: both branches read one norm of the same x
                h = self.n(L, "n1", x)
                x = x + self.attention(L, h) + self.ffn(L, h)
            elif s.placement == "sandwich":  # Peri-LN: x + Norm(F(Norm(x)))
                x = x + self.n(L, "n1o", self.attention(L, self.n(L, "n1", x)))
                x = x + self.n(L, "n2o", self.ffn(L, self.n(L, "n2", x)))
            elif not post:
                x = x + self.attention(L, self.n(L, "n1", x))
                x = x + self.ffn(L, self.n(L, "n2", x))
            else:  # post-LN; DeepNorm up-weights the residual by alpha
                x = self.n(L, "n1", self.alpha * x + self.attention(L, x))
                x = self.n(L, "n2", self.alpha * x + self.ffn(L, x))
        if s.placement in ("pre", "sandwich", "mixln"):
            x = self.norm(x, self.nf_g, self.nf_b, self.nf_a)
        return (x @ self.tok.T) * s.readout_mult


# ----------------------------------------------------------------------------- bench -> reference


def spec_of(cfg: ModelConfig) -> Spec:
    """The reference's settings for a bench config (only what the reference supports)."""
    assert cfg.arch == "decoder" and cfg.tie_embeddings
    assert cfg.norm_type in ("layernorm", "rmsnorm", "dyt") and not (
        cfg.qk_norm and cfg.norm_type != "layernorm"
    )
    placements = ("pre", "post", "deepnorm", "sandwich", "peri", "mixln")
    assert cfg.norm_placement in placements and cfg.rope_fraction == 1.0
    assert cfg.d_ff is None, "the reference takes bench's default widths"
    widths = {"swiglu": int(8 * cfg.d_model / 3)}  # Shazeer 2020: d_ff x 2/3 for 3 matrices
    return Spec(
        pos=cfg.pos_encoding,
        ffn=cfg.ffn,
        ffn_dim=widths.get(cfg.ffn, 4 * cfg.d_model),
        placement="sandwich" if cfg.norm_placement == "peri" else cfg.norm_placement,
        norm=cfg.norm_type,
        norm_bias=cfg.bias and cfg.norm_type in ("layernorm", "dyt"),
        parallel=cfg.block == "parallel",
        # Li et al. 2024: floor(alpha L) Post-LN layers, written here from the paper
        mixln_post=math.floor(cfg.mixln_post_fraction * cfg.n_layers),
        qk_norm=cfg.qk_norm,
        heads=cfg.n_heads,
        kv_heads=cfg.n_kv_heads or cfg.n_heads,
        d=cfg.d_model,
        bias=cfg.bias,
        embed_scale={"sqrt_d": math.sqrt(cfg.d_model), "none": 1.0}[cfg.resolved()["embed_scale"]],
        rope_base=cfg.rope_base,
    )


# Reference name <- bench state_dict name (per layer, under ``layers.i.`` / ``blocks.i.``).
RENAMES = {
    "wo": "attn.out.weight",
    "bo": "attn.out.bias",
    "w2": "ffn.fc_out.weight",
    "b2": "ffn.fc_out.bias",
    "n1_g": "attn_res.norm.weight",
    "n1_b": "attn_res.norm.bias",
    "n2_g": "ffn_res.norm.weight",
    "n2_b": "ffn_res.norm.bias",
    "n1o_g": "attn_res.norm_out.weight",
    "n1o_b": "attn_res.norm_out.bias",
    "n2o_g": "ffn_res.norm_out.weight",
    "n2o_b": "ffn_res.norm_out.bias",
    "n1_a": "attn_res.norm.alpha",
    "n2_a": "ffn_res.norm.alpha",
    "n1o_a": "attn_res.norm_out.alpha",
    "n2o_a": "ffn_res.norm_out.alpha",
}
# The parallel block's one norm is the reference's n1.
PARALLEL_RENAMES = {
    "n1_g": "parallel_res.norm.weight",
    "n1_b": "parallel_res.norm.bias",
    "n1_a": "parallel_res.norm.alpha",
}
QK_NORMS = {"qn_g": "attn.q_norm.weight", "qn_b": "attn.q_norm.bias"} | {
    "kn_g": "attn.k_norm.weight",
    "kn_b": "attn.k_norm.bias",
}


def to_reference(bench: dict[str, Tensor], spec: Spec) -> dict[str, Tensor]:
    """Bench's state dict (or its gradients, keyed the same) in the reference's layout.

    Only re-indexing: fused q/k/v rows split by role and head, bench's fused SwiGLU input
    split into Shazeer's W and V, and, for rope, each head's half-split channel order
    ``(0, h/2, 1, h/2 + 1, ...)`` put in the paper's consecutive-pair order.
    """
    hd = spec.d // spec.heads
    half = hd // 2
    pairs = torch.stack([torch.arange(half), torch.arange(half) + half], -1).flatten()
    perm = pairs if spec.pos == "rope" else torch.arange(hd)
    out = {"tok": bench["tok_embed.weight"]}
    if spec.pos == "learned":
        out["pos"] = bench["pos.table.weight"]
    if "final_norm.weight" in bench:
        out["nf_g"] = bench["final_norm.weight"]
    if "final_norm.bias" in bench:
        out["nf_b"] = bench["final_norm.bias"]
    if "final_norm.alpha" in bench:
        out["nf_a"] = bench["final_norm.alpha"]
    layers = sum(1 for k in bench if k.endswith(".attn.qkv.weight"))
    q_rows, kv_rows = spec.heads * hd, spec.kv_heads * hd
    for i in range(layers):
        src, dst = f"blocks.{i}.", f"layers.{i}."
        for ours, theirs in [*RENAMES.items(), *PARALLEL_RENAMES.items()]:
            if src + theirs in bench:
                out[dst + ours] = bench[src + theirs]
        for ours, theirs in QK_NORMS.items():
            if src + theirs in bench:
                out[dst + ours] = bench[src + theirs][perm]
        for kind, letter in (("weight", "w"), ("bias", "b")):
            if f"{src}attn.qkv.{kind}" in bench:
                q, k, v = bench[f"{src}attn.qkv.{kind}"].split([q_rows, kv_rows, kv_rows])
                out[f"{dst}{letter}q"] = q.reshape(spec.heads, hd, *q.shape[1:])[:, perm]
                out[f"{dst}{letter}k"] = k.reshape(spec.kv_heads, hd, *k.shape[1:])[:, perm]
                out[f"{dst}{letter}v"] = v.reshape(spec.kv_heads, hd, *v.shape[1:])
        for kind, w, v in (("weight", "w1", "v1"), ("bias", "b1", "c1")):
            if f"{src}ffn.fc_in.{kind}" in bench:
                fc_in = bench[f"{src}ffn.fc_in.{kind}"]
                out[dst + w] = fc_in[: spec.ffn_dim]  # Shazeer's W (ReLU's / GELU's W1)
                if spec.ffn == "swiglu":
                    out[dst + v] = fc_in[spec.ffn_dim :]  # and V, the linear unit
    return out


def bench_model(parameterization: str = "standard", base_width: int = D, **kw: object) -> nn.Module:
    """A tiny bench decoder in float64, every parameter moved off its init (seeded)."""
    base: dict[str, object] = dict(
        d_model=D, n_layers=LAYERS, n_heads=HEADS, vocab_size=VOCAB, max_len=MAX_LEN
    )
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**base, **kw}), parameterization, base_width).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p) * (p.std() if p.numel() > 1 and p.std() > 0 else 1))
    return model


def reference_for(model: nn.Module) -> Reference:
    """The reference of bench ``model``'s config, holding bench's weights."""
    spec = spec_of(model.cfg)
    ref = Reference(spec, layers=model.cfg.n_layers)
    state = to_reference(dict(model.state_dict()), spec)
    ref.load_state_dict(state, strict=True)  # every reference parameter gets a bench weight
    return ref


def ids(seed: int = 1) -> Tensor:
    return torch.randint(0, VOCAB, (BATCH, T), generator=torch.Generator().manual_seed(seed))


def max_logit_diff(model: nn.Module, ref: Reference) -> float:
    x = ids()
    with torch.no_grad():
        return (model(x) - ref(x)).abs().max().item()


# ----------------------------------------------------------------------------- logits agree

# Each claim's compared values, on the defaults otherwise (pre-LN, layernorm, learned
# positions, GELU 4d FFN, biases, tied head, xavier init with sqrt(d) embeddings).
CASES: dict[str, dict[str, object]] = {
    # Press et al. 2022: alibi vs sinusoidal vs learned (claim alibi-extrapolation)
    "alibi": dict(pos_encoding="alibi"),
    "alibi-6-heads": dict(pos_encoding="alibi", d_model=24, n_heads=6),  # slopes off 2^a
    "sinusoidal": dict(pos_encoding="sinusoidal"),
    "learned": dict(pos_encoding="learned"),
    # Kazemnejad et al. 2023 (claim nope-length)
    "nope": dict(pos_encoding="nope"),
    # Su et al. 2021
    "rope": dict(pos_encoding="rope"),
    # Shazeer 2020 (claim swiglu); the paper's FFNs have no biases
    "swiglu": dict(ffn="swiglu", bias=False),
    "swiglu-bias": dict(ffn="swiglu"),
    "relu": dict(ffn="relu"),
    "gelu": dict(ffn="gelu"),
    # Dehghani et al. 2023 / Wortsman et al. 2023 (claims qk-norm-lr-sensitivity, entropy)
    "qk-norm": dict(qk_norm=True),
    "qk-norm-rope": dict(qk_norm=True, pos_encoding="rope"),  # variants/qk-norm.yaml
    # Ainslie et al. 2023 (claim gqa: 8 query heads, 8 / 2 / 1 K/V heads)
    "mha-8": dict(n_heads=8, n_kv_heads=8),
    "gqa-2-of-8": dict(n_heads=8, n_kv_heads=2),
    "mqa-of-8": dict(n_heads=8, n_kv_heads=1),
    "gqa-rope": dict(n_kv_heads=2, pos_encoding="rope"),
    # Xiong et al. 2020 (claim postln-warmup; also against torch in test_model_init_scale)
    "post-ln": dict(norm_placement="post"),
    "post-ln-sinusoidal": dict(norm_placement="post", pos_encoding="sinusoidal"),
    # Zhang & Sennrich 2019 (claim rmsnorm-equivalence)
    "rmsnorm": dict(norm_type="rmsnorm"),
    "rmsnorm-post": dict(norm_type="rmsnorm", norm_placement="post"),
    # Wang et al. 2022 (claim deepnet-depth): 6 layers, alpha = 12^(1/4)
    "deepnorm": dict(norm_placement="deepnorm", n_layers=6),
    # Zhu et al. 2025 (claim dyt-layernorm): DyT for every norm, the final one too
    "dyt": dict(norm_type="dyt"),
    "dyt-alpha-1.2-no-bias": dict(norm_type="dyt", dyt_alpha=1.2, bias=False),
    "dyt-rope-gqa": dict(norm_type="dyt", pos_encoding="rope", n_kv_heads=2),
    # Kim et al. 2025 (Peri-LN, an alias of Ding et al.'s sandwich) and Mix-LN (Li et al.)
    "peri": dict(norm_placement="peri"),
    "peri-dyt": dict(norm_placement="peri", norm_type="dyt"),
    "mixln-8-layers": dict(norm_placement="mixln", n_layers=8),  # 2 Post-LN, 6 Pre-LN
    "mixln-half": dict(norm_placement="mixln", n_layers=4, mixln_post_fraction=0.5),
    "mixln-rmsnorm": dict(norm_placement="mixln", n_layers=4, norm_type="rmsnorm"),
    # GPT-J / PaLM parallel block
    "parallel": dict(block="parallel"),
    "parallel-palm": dict(block="parallel", ffn="swiglu", bias=False, pos_encoding="rope"),
    "parallel-dyt-gqa": dict(block="parallel", norm_type="dyt", n_kv_heads=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench_logits_equal_the_papers_reference(case):
    model = bench_model(**CASES[case])
    ref = reference_for(model)
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in model.parameters())
    diff = max_logit_diff(model, ref)
    assert diff < tolerance(model.cfg), f"{case}: bench and the reference differ by {diff:.3g}"


# Each detail the reference gets from its paper changes the logits: were bench to differ
# in it, the test above would fail (the comparison is not vacuous).
MUTANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "alibi-without-bias": (CASES["alibi"], {"pos": "nope"}),
    "rope-without-rotation": (CASES["rope"], {"pos": "nope"}),
    "sinusoids-dropped": (CASES["sinusoidal"], {"pos": "nope"}),
    "gelu-as-relu": (CASES["gelu"], {"ffn": "relu"}),
    "qk-norm-skipped": (CASES["qk-norm"], {"qk_norm": False}),
    "gqa-strided-groups": (CASES["gqa-2-of-8"], {"grouping": "strided"}),
    "pre-ln-as-post-ln": (CASES["learned"], {"placement": "post"}),
    "embeddings-unscaled": (CASES["learned"], {"embed_scale": 1.0}),
    "rmsnorm-centred": (CASES["rmsnorm"], {"norm": "layernorm"}),
    "deepnorm-without-alpha": (CASES["deepnorm"], {"placement": "post"}),
    "mixln-all-pre": (CASES["mixln-8-layers"], {"mixln_post": 0}),
    "mixln-one-post-layer-too-many": (CASES["mixln-8-layers"], {"mixln_post": 3}),
    "peri-as-pre": (CASES["peri"], {"placement": "pre"}),
    "dyt-as-layernorm": (CASES["dyt"], {"norm": "layernorm"}),
    "sequential-as-parallel": (CASES["learned"], {"parallel": True}),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_reference_that_drops_a_papers_detail_disagrees(mutant):
    config, change = MUTANTS[mutant]
    model = bench_model(**config)
    spec = replace(spec_of(model.cfg), **change)
    ref = Reference(spec, layers=model.cfg.n_layers)
    state = to_reference(dict(model.state_dict()), spec_of(model.cfg))
    missing, _ = ref.load_state_dict(state, strict=False)  # a dropped detail's weights: unused
    assert not missing
    assert max_logit_diff(model, ref) > 1e-2


MUP_BASE, MUP_WIDTH = 16, 64  # 4x the base: every µP multiplier differs from 1


def mup_spec(model: nn.Module) -> Spec:
    """The reference of a µP model: Tensor Programs V's multipliers at this width."""
    d_head, base_d_head = MUP_WIDTH // HEADS, MUP_BASE // HEADS
    return replace(
        spec_of(model.cfg),
        attn_scale=math.sqrt(base_d_head) / d_head,
        readout_mult=MUP_BASE / MUP_WIDTH,
        embed_scale=math.sqrt(MUP_BASE),
    )


MUP_MUTANTS = {
    "none": {},
    "readout-multiplier-forgotten": {"readout_mult": 1.0},
    "attention-one-over-sqrt-d": {"attn_scale": None},
    "embedding-scale-of-the-width": {"embed_scale": math.sqrt(MUP_WIDTH)},
}


@pytest.mark.parametrize("mutant", list(MUP_MUTANTS))
def test_mup_logits_equal_the_papers_reference_and_each_multiplier_matters(mutant):
    model = bench_model("mup", MUP_BASE, d_model=MUP_WIDTH)
    spec = replace(mup_spec(model), **MUP_MUTANTS[mutant])
    ref = Reference(spec, layers=model.cfg.n_layers)
    ref.load_state_dict(to_reference(dict(model.state_dict()), spec), strict=True)
    diff = max_logit_diff(model, ref)
    if mutant == "none":
        assert diff < EXACT, f"bench's µP and the reference differ by {diff:.3g}"
    else:
        assert diff > 1e-2, f"{mutant}: the reference without it should disagree"


def test_rope_rotation_is_not_the_consecutive_pair_rotation_without_the_permutation():
    """Bench pairs channel i with i + h/2; copying q/k rows unpermuted into the paper's
    consecutive-pair rotation changes the logits, so the permutation is what makes them agree."""
    model = bench_model(**CASES["rope"])
    spec = spec_of(model.cfg)
    ref = Reference(spec, layers=model.cfg.n_layers)
    ref.load_state_dict(to_reference(dict(model.state_dict()), replace(spec, pos="nope")))
    assert max_logit_diff(model, ref) > 1e-2


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 12, 16])
def test_alibi_slopes_of_the_built_model_are_the_papers(n):
    """Section 3: 8 heads get 1/2, 1/4, ..., 1/256; 16 heads interleave 1/2^0.5 between them."""
    assert ref_alibi_slopes(8) == [2.0**-i for i in range(1, 9)]
    assert ref_alibi_slopes(16)[::2] == [2.0 ** -(i + 0.5) for i in range(8)]
    model = build_model(ModelConfig(pos_encoding="alibi", d_model=2 * n, n_heads=n, max_len=8))
    assert model.pos.slopes.tolist() == pytest.approx(ref_alibi_slopes(n), rel=1e-6)


# ----------------------------------------------------------------------------- gradients agree


@pytest.mark.parametrize(
    "case",
    [
        dict(pos_encoding="alibi"),
        dict(pos_encoding="rope", ffn="swiglu", n_kv_heads=2, qk_norm=True),
        dict(norm_type="dyt", n_kv_heads=2),
        dict(norm_placement="peri", norm_type="dyt"),
        dict(norm_placement="mixln", n_layers=4, mixln_post_fraction=0.5),
        dict(block="parallel", n_kv_heads=2, pos_encoding="rope"),
    ],
    ids=["alibi", "rope-swiglu-gqa-qknorm", "dyt-gqa", "peri-dyt", "mixln", "parallel-gqa"],
)
def test_bench_gradients_equal_the_references(case):
    model = bench_model(**case)
    ref = reference_for(model)
    x, y = ids(2), ids(3)
    for m in (model, ref):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
    grads = {k: p.grad for k, p in model.named_parameters()}  # tok_embed includes the head's
    want = to_reference(grads, ref.spec)
    got = dict(ref.named_parameters())
    assert set(want) == set(got)
    worst = max((want[k] - got[k].grad).abs().max().item() for k in want)
    assert worst < tolerance(model.cfg), worst


# ----------------------------------------------------------------------------- the claims' sizes


def _claim_model(claim: str, **axis: object) -> nn.Module:
    sweep = load_claim(claim).sweep
    assert sweep is not None
    return build_model(ModelConfig(**{**sweep["base"]["model"], **axis}))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_swiglu_claim_ffns_are_within_one_percent_of_the_4d_relu_and_gelu_ffns():
    """Claim swiglu: "d_ff 4d for ReLU/GELU and 8d/3 for SwiGLU (parameters within 1%)"."""
    sweep = load_claim("swiglu").sweep
    assert sweep is not None
    values = sweep["compare"]["model.ffn"]
    assert set(values) == {"swiglu", "relu", "gelu"}
    models = {v: _claim_model("swiglu", ffn=v) for v in values}
    ffn = {v: _count(m.blocks[0].ffn) for v, m in models.items()}
    total = {v: _count(m) for v, m in models.items()}
    d = models["relu"].cfg.d_model
    assert models["relu"].blocks[0].ffn.fc_out.in_features == 4 * d
    assert models["swiglu"].blocks[0].ffn.fc_out.in_features == int(8 * d / 3)
    assert ffn["relu"] == ffn["gelu"] and total["relu"] == total["gelu"]
    assert abs(ffn["swiglu"] / ffn["relu"] - 1) < 0.01, ffn
    assert abs(total["swiglu"] / total["relu"] - 1) < 0.01, total


def test_gqa_claim_kv_projections_shrink_by_heads_over_kv_heads():
    """Claim gqa: 8 query heads with 8, 2 or 1 K/V heads (written ``n_heads``,
    ``n_heads/4`` and 1, so every rung of its width ladder keeps the proportion); queries
    and outputs unchanged."""
    sweep = load_claim("gqa").sweep
    assert sweep is not None
    kv_values = sweep["compare"]["model.n_kv_heads"]
    built = [_claim_model("gqa", n_kv_heads=kv) for kv in kv_values]
    models = {m.cfg.kv_heads: m for m in built}
    h = built[0].cfg.n_heads
    assert sorted(models) == [1, h // 4, h] and h == 8

    def sizes(model: nn.Module) -> dict[str, int]:
        blocks = model.blocks[0].attn.weight_blocks()
        out: dict[str, int] = {}
        for role, linear, rows in blocks:
            n = rows.stop - rows.start
            out[role] = n * linear.in_features + (n if linear.bias is not None else 0)
        return out

    mha = sizes(models[h])
    for kv, model in models.items():
        got = sizes(model)
        assert got["k"] * (h // kv) == mha["k"] and got["v"] * (h // kv) == mha["v"], (kv, got)
        assert got["q"] == mha["q"] and got["out"] == mha["out"], (kv, got)
        saved = model.cfg.n_layers * (mha["k"] + mha["v"]) * (1 - kv / h)
        assert _count(models[h]) - _count(model) == saved, kv
