"""Positional encodings behind one interface with three optional hooks.

- :meth:`Positional.embed` adds to the token embeddings (sinusoidal, learned);
- :meth:`Positional.rotary` gives a :class:`Rotary` that rotates queries and keys (rope);
- :meth:`Positional.bias` gives an additive attention bias ``[H, T, S]`` (alibi, t5, fire).

RoPE's frequencies can be scaled for sequences longer than the training length
(``model.rope_scaling``: position interpolation, NTK-aware, YaRN; :class:`RopeScaling`).

Each encoding also answers, from the config alone, how long a sequence it
supports (:meth:`Positional.max_positions`; None: any length), so a run is
refused before it starts when its task feeds longer sequences.

A causal stack's attention-sink vectors (``model.sink_tokens = k``,
:mod:`bench.model.sink`) are ordinary positions to every encoding: they take
``0..k-1`` and the tokens ``k..k+T-1`` (absolute tables and relative distances
alike), so a learned table has ``k`` positions fewer for tokens, and RoPE's
training length counts them.

``nope`` uses none. A stack calls ``rotary`` and ``bias`` once per forward and
passes the results to every layer; attention applies them without asking which
encoding produced them. ``causal`` says whether the stack is a decoder (the
relative encodings need it: t5 uses one-sided buckets, alibi one-sided distances).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.sink import sink_count


class Positional(nn.Module):
    """Base encoding: every hook is a no-op (this is ``nope``)."""

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal

    @classmethod
    def max_positions(cls, cfg: ModelConfig) -> int | None:
        """The longest sequence this encoding supports under ``cfg``; None when unlimited."""
        return None

    def embed(self, x: Tensor) -> Tensor:
        """Token embeddings ``[B, T, D]`` plus position information (here: unchanged)."""
        return x

    def rotary(self, t: int, device: torch.device) -> Rotary | None:
        """The rotation for a length-``t`` self-attention, or None."""
        return None

    def bias(self, t_q: int, t_k: int, device: torch.device) -> Tensor | None:
        """Additive attention bias ``[H, t_q, t_k]`` (float32), or None."""
        return None


class NoPE(Positional):
    """Kazemnejad et al. 2023: no explicit positions; causal masking alone orders tokens."""


def sinusoid_table(t: int, d: int, device: torch.device | None = None) -> Tensor:
    """Vaswani et al. 2017: ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``."""
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / d)
    )
    table = torch.zeros(t, d, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table


class Sinusoidal(Positional):
    """Fixed sinusoids added to the embeddings; defined for any length."""

    table: Tensor  # buffer: the first max_len positions

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.d = cfg.d_model
        self.register_buffer("table", sinusoid_table(cfg.max_len, cfg.d_model), persistent=False)

    def embed(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        table = self.table if t <= self.table.shape[0] else sinusoid_table(t, self.d, x.device)
        return x + table[:t].to(x.dtype)


class Learned(Positional):
    """A learned table of ``max_len`` absolute position embeddings (GPT-2)."""

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.table = nn.Embedding(cfg.max_len, cfg.d_model)

    @classmethod
    def max_positions(cls, cfg: ModelConfig) -> int | None:
        """``max_len`` less the sink positions: the table has no position past it."""
        return cfg.max_len - cfg.sink_tokens

    def embed(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.table.num_embeddings:
            raise ValueError(
                f"sequence length {t} exceeds model.max_len={self.table.num_embeddings} "
                "of the learned position table"
            )
        return x + self.table.weight[:t].to(x.dtype)


class Rotary:
    """Rotates the first ``rot_dim`` channels of ``[B, H, T, head_dim]`` by position.

    Uses the half-split pairing (channel ``i`` with ``i + rot_dim/2``); the
    remaining ``head_dim - rot_dim`` channels pass through untouched. ``mscale``
    multiplies the whole result (YaRN's ``sqrt(1/t)``, applied to queries and keys
    both, so the scores get ``1/t``; 1: plain RoPE).
    """

    def __init__(self, cos: Tensor, sin: Tensor, mscale: float = 1.0) -> None:
        self.cos, self.sin = cos, sin  # [T, rot_dim/2]
        self.half = cos.shape[-1]
        self.mscale = mscale

    def __call__(self, x: Tensor) -> Tensor:
        h = self.half
        x1, x2, rest = x[..., :h], x[..., h : 2 * h], x[..., 2 * h :]
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)
        return out if self.mscale == 1.0 else out * self.mscale


def rope_inv_freq(rot_dim: int, base: float) -> Tensor:
    """RoPE's angular frequencies ``theta_i = base^(-2i/rot_dim)``, ``i < rot_dim/2`` (float64)."""
    return base ** (-torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)


class RopeScaling:
    """``none``: RoPE's frequencies at every length. A scaling maps the frequencies
    ``theta [rot_dim/2]`` (float64) and a factor ``s >= 1`` to new frequencies and an
    attention factor; ``s = 1`` always gives the frequencies back unchanged.

    Built with the rotated width ``rot_dim`` (the papers' ``|D|``), RoPE's ``base`` and
    the training length ``original_len`` (the papers' ``L``).
    """

    def __init__(self, cfg: ModelConfig, rot_dim: int, original_len: int) -> None:
        self.rot_dim, self.base, self.original_len = rot_dim, cfg.rope_base, original_len

    def frequencies(self, theta: Tensor, s: float) -> Tensor:
        return theta

    def mscale(self, s: float) -> float:
        """What queries and keys are multiplied by (1: nothing)."""
        return 1.0


class PositionInterpolation(RopeScaling):
    """Chen, Wong, Chen, Tian 2023, "Extending Context Window of Large Language Models via
    Positional Interpolation" (arXiv 2306.15595): position ``m -> m / s``, i.e. every
    frequency ``theta_i / s``, so a length ``s L`` sequence sees the angles of length ``L``."""

    def frequencies(self, theta: Tensor, s: float) -> Tensor:
        return theta / s


class NTKAware(RopeScaling):
    """NTK-aware scaling (bloc97, 2023, r/LocalLLaMA; no paper; jquesnelle/yarn
    ``LlamaNTKScaledRotaryEmbedding``, described in Peng et al. 2023, Sec. 3.1): the base
    ``b -> b * s^(|D|/(|D|-2))``, which keeps the highest frequency and divides the
    lowest by ``s`` (interpolates the long wavelengths, extrapolates the short ones)."""

    def frequencies(self, theta: Tensor, s: float) -> Tensor:
        d = self.rot_dim
        base = self.base * s ** (d / (d - 2))
        return base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=theta.device) / d)


class YaRN(RopeScaling):
    """Peng, Quesnelle, Fan, Shippole 2023, "YaRN: Efficient Context Window Extension of
    Large Language Models" (ICLR 2024, arXiv 2309.00071), Eqs. 17-22 ("NTK-by-parts"
    plus attention temperature): pair ``d`` of wavelength ``lambda_d = 2 pi / theta_d``
    turns ``r = L / lambda_d`` times in the training length ``L``; with the ramp
    ``gamma(r) = 0 (r < alpha), 1 (r > beta), (r - alpha)/(beta - alpha)`` between,
    ``theta'_d = (1 - gamma) theta_d / s + gamma theta_d`` (long wavelengths interpolated
    as in PI, short ones unchanged), and the scores are divided by ``t`` with
    ``sqrt(1/t) = 0.1 ln s + 1`` (multiplying q and k by it, as the reference's
    ``get_mscale`` does to cos and sin). ``alpha = 1, beta = 32`` (Llama; ``yarn_alpha``,
    ``yarn_beta``). The ramp is the paper's, linear in ``r``; the reference code ramps
    linearly in the pair index between rounded bounds, which agrees outside the ramp."""

    def __init__(self, cfg: ModelConfig, rot_dim: int, original_len: int) -> None:
        super().__init__(cfg, rot_dim, original_len)
        self.alpha, self.beta = cfg.yarn_alpha, cfg.yarn_beta

    def frequencies(self, theta: Tensor, s: float) -> Tensor:
        r = self.original_len * theta / (2 * math.pi)  # L / lambda_d
        gamma = ((r - self.alpha) / (self.beta - self.alpha)).clamp(0.0, 1.0)
        return (1 - gamma) * theta / s + gamma * theta

    def mscale(self, s: float) -> float:
        return 0.1 * math.log(s) + 1.0 if s > 1 else 1.0


ROPE_SCALINGS: dict[str, type[RopeScaling]] = {
    "none": RopeScaling,
    "pi": PositionInterpolation,
    "ntk": NTKAware,
    "yarn": YaRN,
}


class RoPE(Positional):
    """Su et al. 2021: rotate query/key pairs by ``p * base^(-2i/rot_dim)``.

    ``rope_fraction`` of the head dimension is rotated (an even count), as in
    GPT-NeoX's partial rotary; the cos/sin tables are cached up to ``max_len``.

    ``rope_scaling`` (:data:`ROPE_SCALINGS`) changes the frequencies by a factor ``s``:
    a fixed ``rope_scaling_factor`` at every length (the models these methods extend
    are fine-tuned, then run, at that factor), or, by default, the dynamic factor
    ``s = max(1, T / L)`` of each forward of length ``T`` (``L = rope_original_len``,
    the training length): plain RoPE up to ``L``, scaled past it, without fine-tuning
    (the "Dynamic" PI/NTK/YaRN of Peng et al. 2023, Sec. 3.3 and jquesnelle/yarn).
    ``T`` and ``L`` both count a causal stack's sink positions (``rope_original_len``
    counts tokens; the stack adds its ``k`` sinks), so sinks do not start the scaling.
    """

    inv_freq: Tensor  # buffers
    cos_cached: Tensor
    sin_cached: Tensor

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.rot_dim = int(cfg.head_dim * cfg.rope_fraction) // 2 * 2
        # outside a run: max_len; in a run, the task's training length and the stack's sinks
        sinks = sink_count(cfg, causal)
        self.original_len = cfg.rope_original_len + sinks if cfg.rope_original_len else cfg.max_len
        self.scaling = ROPE_SCALINGS[cfg.rope_scaling](cfg, self.rot_dim, self.original_len)
        self.kind, self.factor = cfg.rope_scaling, cfg.rope_scaling_factor  # None: dynamic
        self.base = cfg.rope_base
        s = self.factor or 1.0
        inv_freq = self.scaling.frequencies(rope_inv_freq(self.rot_dim, cfg.rope_base), s)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.mscale = self.scaling.mscale(s)
        cos, sin = self._tables(cfg.max_len, self.inv_freq)
        self.register_buffer("cos_cached", cos, persistent=False)
        self.register_buffer("sin_cached", sin, persistent=False)

    def _tables(self, t: int, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.arange(t, device=inv_freq.device, dtype=torch.float32)
        angles = torch.outer(pos, inv_freq.float())
        return angles.cos(), angles.sin()

    def scale(self, t: int) -> float:
        """The factor ``s`` a length-``t`` forward uses (1: plain RoPE)."""
        if self.kind == "none":
            return 1.0
        if self.factor is not None:
            return self.factor
        return max(1.0, t / self.original_len)

    def rotary(self, t: int, device: torch.device) -> Rotary:
        s = self.scale(t)
        if self.factor is None and s > 1.0:  # dynamic, past the training length
            theta = self.scaling.frequencies(rope_inv_freq(self.rot_dim, self.base), s)
            inv = theta.float().to(device)
            return Rotary(*self._tables(t, inv), self.scaling.mscale(s))
        if t <= self.cos_cached.shape[0]:
            return Rotary(self.cos_cached[:t], self.sin_cached[:t], self.mscale)
        return Rotary(*self._tables(t, self.inv_freq), self.mscale)  # longer than max_len


def alibi_slopes(n_heads: int) -> list[float]:
    """Press et al. 2022 head slopes: the geometric sequence starting at ``2^(-8/n)``.

    For a head count that is not a power of two, the official rule: the slopes
    of the closest smaller power of two, then every other slope of twice that.
    """

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


class ALiBi(Positional):
    """Press et al. 2022: bias ``-slope_h * distance``; one-sided in a decoder, ``|i-j|`` in an encoder."""

    slopes: Tensor  # buffer: one slope per head

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.register_buffer("slopes", torch.tensor(alibi_slopes(cfg.n_heads)), persistent=False)

    def bias(self, t_q: int, t_k: int, device: torch.device) -> Tensor:
        q = torch.arange(t_q, device=device)[:, None]
        k = torch.arange(t_k, device=device)[None, :]
        dist = (
            (q - k).clamp_min(0) if self.causal else (q - k).abs()
        )  # future keys are masked anyway
        return -self.slopes.to(device)[:, None, None] * dist.float()


def t5_bucket(rel: Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> Tensor:
    """Raffel et al. 2020 relative-position buckets for ``rel = key_pos - query_pos``.

    Half the buckets are exact small distances, the rest log-spaced up to
    ``max_distance``; bidirectional buckets split the range by sign, causal ones
    put every future offset in the bucket of offset 0.
    """
    out = torch.zeros_like(rel)
    n = num_buckets
    if bidirectional:
        n //= 2
        out = out + (rel > 0).long() * n
        dist = rel.abs()
    else:
        dist = (-rel).clamp_min(0)
    max_exact = max(n // 2, 1)
    log_span = math.log(max(max_distance, max_exact + 1) / max_exact)
    large = (
        max_exact
        + (
            torch.log(dist.clamp_min(max_exact).float() / max_exact) / log_span * (n - max_exact)
        ).long()
    )
    large = large.clamp_max(n - 1)
    return out + torch.where(dist < max_exact, dist, large)


class T5Bias(Positional):
    """Raffel et al. 2020: a learned scalar per (bucket, head), shared by all layers of a stack."""

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.num_buckets, self.max_distance = cfg.t5_num_buckets, cfg.t5_max_distance
        self.table = nn.Embedding(cfg.t5_num_buckets, cfg.n_heads)

    def bias(self, t_q: int, t_k: int, device: torch.device) -> Tensor:
        rel = torch.arange(t_k, device=device)[None, :] - torch.arange(t_q, device=device)[:, None]
        buckets = t5_bucket(rel, not self.causal, self.num_buckets, self.max_distance)
        return self.table(buckets).permute(2, 0, 1).float()  # [H, t_q, t_k]


class FIRE(Positional):
    """Li, Zhu, Ruan, Ding, Ramaswamy, Fox, Kumar, Bhojanapalli 2023, "Functional
    Interpolation for Relative Positions Improves Long Context Transformers" (ICLR 2024,
    arXiv 2310.04418), Eq. 4 and App. C's code: the bias of query ``i`` and key ``j`` is
    ``f(psi(i - j) / psi(max(L, i)))`` with ``psi(x) = log(|c x| + 1)``, a learnable
    ``c`` (init 0.1), a learnable threshold ``L = |m * L0|`` (``m`` init 1,
    ``L0 = fire_threshold``, 512 in the paper) and ``f`` an MLP ``1 -> fire_hidden (32)
    -> ReLU -> n_heads``. Dividing by the query's own (log) position maps every distance
    into ``[0, 1]`` at any length ("progressive interpolation"). One FIRE a stack, shared
    by its layers as the T5 bias is here; causal only (``ModelConfig`` refuses an
    encoder): the normalizer is the query position.
    """

    EPS = 1e-6  # added to the normalizer, as the paper's code does

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.mlp = nn.Sequential(
            nn.Linear(1, cfg.fire_hidden), nn.ReLU(), nn.Linear(cfg.fire_hidden, cfg.n_heads)
        )
        self.c = nn.Parameter(torch.tensor(0.1))
        self.threshold_multiplier = nn.Parameter(torch.tensor(1.0))
        self.init_threshold = cfg.fire_threshold

    def bias(self, t_q: int, t_k: int, device: torch.device) -> Tensor:
        q = torch.arange(t_q, device=device, dtype=torch.float32)
        k = torch.arange(t_k, device=device, dtype=torch.float32)
        threshold = (self.threshold_multiplier * self.init_threshold).abs()
        normalizer = torch.log((self.c * torch.maximum(q, threshold)).abs() + 1) + self.EPS
        dist = torch.log((self.c * (q[:, None] - k[None, :])).abs() + 1)
        return self.mlp((dist / normalizer[:, None])[..., None]).permute(2, 0, 1).float()


POSITIONAL: dict[str, type[Positional]] = {
    "sinusoidal": Sinusoidal,
    "learned": Learned,
    "rope": RoPE,
    "alibi": ALiBi,
    "t5": T5Bias,
    "nope": NoPE,
    "fire": FIRE,
}


def max_positions(cfg: ModelConfig) -> int | None:
    """The longest sequence ``cfg.pos_encoding`` supports (None: any length)."""
    return POSITIONAL[cfg.pos_encoding].max_positions(cfg)
