"""Positional encodings behind one interface with three optional hooks.

- :meth:`Positional.embed` adds to the token embeddings (sinusoidal, learned);
- :meth:`Positional.rotary` gives a :class:`Rotary` that rotates queries and keys (rope);
- :meth:`Positional.bias` gives an additive attention bias ``[H, T, S]`` (alibi, t5).

Each encoding also answers, from the config alone, how long a sequence it
supports (:meth:`Positional.max_positions`; None: any length), so a run is
refused before it starts when its task feeds longer sequences.

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
        """``max_len``: the table has no position past it."""
        return cfg.max_len

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
    remaining ``head_dim - rot_dim`` channels pass through untouched.
    """

    def __init__(self, cos: Tensor, sin: Tensor) -> None:
        self.cos, self.sin = cos, sin  # [T, rot_dim/2]
        self.half = cos.shape[-1]

    def __call__(self, x: Tensor) -> Tensor:
        h = self.half
        x1, x2, rest = x[..., :h], x[..., h : 2 * h], x[..., 2 * h :]
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


class RoPE(Positional):
    """Su et al. 2021: rotate query/key pairs by ``p * base^(-2i/rot_dim)``.

    ``rope_fraction`` of the head dimension is rotated (an even count), as in
    GPT-NeoX's partial rotary; the cos/sin tables are cached up to ``max_len``.
    """

    inv_freq: Tensor  # buffers
    cos_cached: Tensor
    sin_cached: Tensor

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__(cfg, causal)
        self.rot_dim = int(cfg.head_dim * cfg.rope_fraction) // 2 * 2
        inv_freq = cfg.rope_base ** (
            -torch.arange(0, self.rot_dim, 2, dtype=torch.float64) / self.rot_dim
        )
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        cos, sin = self._tables(cfg.max_len)
        self.register_buffer("cos_cached", cos, persistent=False)
        self.register_buffer("sin_cached", sin, persistent=False)

    def _tables(self, t: int) -> tuple[Tensor, Tensor]:
        pos = torch.arange(t, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.float())
        return angles.cos(), angles.sin()

    def rotary(self, t: int, device: torch.device) -> Rotary:
        if t <= self.cos_cached.shape[0]:
            return Rotary(self.cos_cached[:t], self.sin_cached[:t])
        return Rotary(*self._tables(t))  # longer than max_len: length generalisation


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


POSITIONAL: dict[str, type[Positional]] = {
    "sinusoidal": Sinusoidal,
    "learned": Learned,
    "rope": RoPE,
    "alibi": ALiBi,
    "t5": T5Bias,
    "nope": NoPE,
}


def max_positions(cfg: ModelConfig) -> int | None:
    """The longest sequence ``cfg.pos_encoding`` supports (None: any length)."""
    return POSITIONAL[cfg.pos_encoding].max_positions(cfg)
