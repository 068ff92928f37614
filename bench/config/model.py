"""The transformer's config: every architecture axis a ``Literal`` (the model's
registries are checked against them), sizes, and the init-scale arithmetic behind
:meth:`ModelConfig.init_warning`."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bench.config.base import Strict

Arch = Literal["decoder", "encoder_decoder"]
NormPlacement = Literal["post", "pre", "sandwich", "deepnorm", "peri", "mixln"]
NormType = Literal["layernorm", "rmsnorm", "scalenorm", "dyt"]
BlockLayout = Literal["sequential", "parallel"]
PosEncoding = Literal["sinusoidal", "learned", "rope", "alibi", "t5", "nope", "fire"]
RopeScaling = Literal["none", "pi", "ntk", "yarn"]  # positions past the training length
FeedForward = Literal["gelu", "relu", "swiglu"]
Init = Literal["auto", "torch", "gpt2", "xavier", "deepnorm"]
EmbedScale = Literal["auto", "none", "sqrt_d", "norm"]
# model.attention (bench.model.attention_kinds): Qiu et al. 2025 (gated), Ye et al. 2025
# (diff), Ramapuram et al. 2025 (sigmoid)
AttentionKind = Literal["softmax", "gated", "gated_headwise", "diff", "sigmoid"]
# n_kv_heads as a fraction of the query heads: "n_heads" (MHA) or "n_heads/K" (GQA with
# groups of K query heads) at any width, so a width ladder keeps the proportion with one
# value for every rung
KV_FRACTION = re.compile(r"^n_heads(/[1-9][0-9]*)?$")


def kv_group(fraction: str) -> int:
    """K of ``"n_heads/K"`` (1 for ``"n_heads"``): the query heads sharing a key/value head."""
    return int(fraction.removeprefix("n_heads").removeprefix("/") or 1)


GPT2_STD = 0.02  # Radford et al. 2019: every weight N(0, 0.02)
SINUSOID_RMS = math.sqrt(0.5)  # RMS of the Vaswani et al. sin/cos table (half sin, half cos)


def embedding_std(init: str, d_model: int) -> float:
    """The standard deviation the init scheme ``init`` gives token (and learned position) embeddings.

    torch: ``nn.Embedding``'s N(0, 1); gpt2: 0.02; xavier and deepnorm: ``d_model^-1/2``
    (tensor2tensor and fairseq, whose ``sqrt(d_model)`` scale then gives unit RMS).
    """
    return {"torch": 1.0, "gpt2": GPT2_STD}.get(init, d_model**-0.5)


# Bounds init_warning() judges a combination by (pure arithmetic on the init's std).
# A post-LN/deepnorm first block's attention logits scale with its input RMS squared:
# RMS 0.028 (gpt2 init, no scale) gives logits of std ~1e-5 and attention that stays
# uniform (issue 9); below 0.25 they are < 1/16 of the unit-input value.
MIN_FIRST_BLOCK_RMS = 0.25
MAX_FIRST_BLOCK_RMS = 4.0  # above: logits >= 16x the unit-input value (saturated softmax)
MAX_SINUSOID_RATIO = 4.0  # sinusoidal vs token RMS further apart than this: one swamps the other


class ModelConfig(Strict):
    """The transformer. Axis fields are Literals; sizes are positive ints."""

    arch: Arch = Field(default="decoder", description="decoder-only, or encoder-decoder")
    norm_placement: NormPlacement = Field(
        default="pre", description="where each block normalizes (docs/variants.md)"
    )
    norm_type: NormType = Field(default="layernorm", description="the normalization")
    qk_norm: bool = Field(default=False, description="normalize queries and keys per head")
    # --- normalization, block and loss variants (docs/variants.md) ---
    block: BlockLayout = Field(
        default="sequential", description="parallel: x + attn(N(x)) + ffn(N(x)) (GPT-J, PaLM)"
    )
    dyt_alpha: float = Field(
        default=0.5,
        gt=0,
        description="DyT (Zhu et al. 2025): init of the learnable scalar alpha in "
        "gamma*tanh(alpha*x)+beta, every DyT of the model (the paper's default 0.5)",
    )
    mixln_post_fraction: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Mix-LN (Li et al. 2024): the first floor(fraction * layers) blocks "
        "of each stack are Post-LN, the rest Pre-LN (the paper's 0.25)",
    )
    attention: AttentionKind = Field(default="softmax", description="the attention function")
    sigmoid_bias: float | None = Field(
        default=None, description="sigmoid attention's bias b (default: -ln of the keys)"
    )
    attn_window: int | None = Field(
        default=None,
        ge=1,
        description="sliding-window self-attention: keys within N positions (default: all)",
    )
    sink_tokens: int = Field(
        default=0,
        ge=0,
        description="learnable attention-sink embeddings put before every sequence of each "
        "causal stack (Xiao et al. 2023 use 1; 0: none)",
    )
    pos_encoding: PosEncoding = Field(default="learned", description="positional encoding")
    rope_base: float = Field(default=10000.0, gt=0, description="RoPE frequency base")
    rope_fraction: float = Field(
        default=1.0, gt=0, le=1, description="fraction of each head's dimensions RoPE rotates"
    )
    # --- RoPE frequency scaling (bench.model.positional) ---
    rope_scaling: RopeScaling = Field(
        default="none", description="RoPE frequency scaling for positions past the training length"
    )
    rope_scaling_factor: float | None = Field(
        default=None,
        ge=1,
        description="RoPE scaling: a fixed factor s at every length (default: dynamic, "
        "s = max(1, length / rope_original_len) for each forward)",
    )
    rope_original_len: int | None = Field(
        default=None,
        ge=2,
        description="RoPE scaling: the training length L it scales from (default: the "
        "task's longest training sequence, set by the run)",
    )
    yarn_alpha: float = Field(
        default=1.0, gt=0, description="YaRN: below alpha rotations in L a pair is interpolated"
    )
    yarn_beta: float = Field(
        default=32.0, gt=0, description="YaRN: above beta rotations in L a pair is unchanged"
    )
    fire_hidden: int = Field(default=32, ge=1, description="FIRE: hidden width of the bias MLP")
    fire_threshold: float = Field(
        default=512.0, gt=0, description="FIRE: initial threshold L of the normalizer max(L, i)"
    )
    # --- end RoPE scaling / FIRE ---
    t5_num_buckets: int = Field(default=32, ge=2, description="T5 bias: relative-position buckets")
    t5_max_distance: int = Field(
        default=128, ge=2, description="T5 bias: distance of the last (log-spaced) bucket"
    )
    d_model: int = Field(default=128, ge=1, description="width")
    n_layers: int = Field(
        default=2, ge=1, description="blocks (of the decoder, in an encoder-decoder)"
    )
    n_encoder_layers: int | None = Field(
        default=None, ge=1, description="encoder blocks (default: n_layers)"
    )
    n_heads: int = Field(default=4, ge=1, description="query heads (must divide d_model)")
    n_kv_heads: int | str | None = Field(
        default=None,
        description="key/value heads: n_heads (MHA, default), 1 (MQA), between (GQA); or "
        "'n_heads' or 'n_heads/K', a K-th of the query heads at any width (groups of K)",
    )
    d_ff: int | None = Field(
        default=None, ge=1, description="FFN width (default: 4 d_model; 8/3 d_model for swiglu)"
    )
    ffn: FeedForward = Field(default="gelu", description="the feed-forward block")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="attention and residual dropout")
    bias: bool = Field(default=True, description="biases in linear layers and norms")
    tie_embeddings: bool = Field(default=True, description="the output head is the embedding")
    init: Init = Field(
        default="auto", description="auto: deepnorm for deepnorm, else xavier (resolved())"
    )
    embed_scale: EmbedScale = Field(
        default="auto",
        description="token embeddings x1 (none), x sqrt(d_model) (sqrt_d) or normed (norm); "
        "auto: resolved()",
    )
    max_len: int = Field(default=1024, ge=1, description="longest sequence a position table covers")
    vocab_size: int = Field(default=256, ge=2, description="set from the task")

    @field_validator("n_kv_heads")
    @classmethod
    def _kv_heads_value(cls, v: int | str | None) -> int | str | None:
        if (isinstance(v, str) and not KV_FRACTION.match(v)) or (isinstance(v, int) and v < 1):
            raise ValueError(f"{v!r}: allowed: an integer >= 1, 'n_heads' or 'n_heads/K'")
        return v

    @model_validator(mode="after")
    def _divisibility(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}"
            )
        if isinstance(self.n_kv_heads, str) and self.n_heads % kv_group(self.n_kv_heads):
            raise ValueError(
                f"model.n_kv_heads={self.n_kv_heads!r}: model.n_heads={self.n_heads} is not "
                f"divisible by {kv_group(self.n_kv_heads)}"
            )
        if self.kv_heads > self.n_heads or self.n_heads % self.kv_heads:
            raise ValueError(
                f"model.n_heads={self.n_heads} must be divisible by "
                f"model.n_kv_heads={self.kv_heads} (1 <= n_kv_heads <= n_heads)"
            )
        if self.qk_norm and self.norm_type == "dyt":
            raise ValueError(
                "model.qk_norm=true with model.norm_type=dyt: DyT is not a normalization "
                "and Zhu et al. 2025 use no QK-norm; allowed: qk_norm=false, or a norm_type "
                "of layernorm, rmsnorm, scalenorm"
            )
        if self.block == "parallel" and (self.norm_placement != "pre" or self.arch != "decoder"):
            raise ValueError(
                f"model.block=parallel with norm_placement={self.norm_placement}, "
                f"arch={self.arch}: the parallel block (GPT-J, PaLM) is a Pre-LN decoder "
                "block; allowed: norm_placement=pre and arch=decoder"
            )
        if self.attention == "diff" and (self.n_heads % 2 or self.kv_heads % 2):
            raise ValueError(
                f"model.attention=diff pairs heads: model.n_heads={self.n_heads} and "
                f"model.n_kv_heads={self.kv_heads} must both be even"
            )
        if self.sigmoid_bias is not None and self.attention != "sigmoid":
            raise ValueError(
                f"model.sigmoid_bias={self.sigmoid_bias} is read only by "
                f"model.attention=sigmoid (it is {self.attention})"
            )
        if self.pos_encoding == "rope":
            rot = int(self.head_dim * self.rope_fraction) // 2 * 2
            if rot < 2:
                raise ValueError(
                    f"model.rope_fraction={self.rope_fraction} rotates no pair of the "
                    f"head dimension {self.head_dim}; allowed: a fraction rotating >= 2 dims"
                )
        self._check_positions()
        if self.pos_encoding == "learned" and self.sink_tokens >= self.max_len:
            raise ValueError(
                f"model.sink_tokens={self.sink_tokens} takes the first positions of the learned "
                f"position table and leaves none of model.max_len={self.max_len} for tokens; "
                "allowed: sink_tokens < max_len"
            )
        return self

    def _check_positions(self) -> None:
        """RoPE scaling and FIRE: the combinations they are defined for (one line each)."""
        if self.rope_scaling == "none":
            for key in ("rope_scaling_factor", "rope_original_len"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"model.{key}={getattr(self, key)} is only read with model.rope_scaling "
                        "pi, ntk or yarn; allowed with rope_scaling=none: unset"
                    )
        elif self.pos_encoding != "rope":
            raise ValueError(
                f"model.rope_scaling={self.rope_scaling} scales RoPE's frequencies, but "
                f"model.pos_encoding={self.pos_encoding}; allowed: pos_encoding=rope, "
                "or rope_scaling=none"
            )
        elif self.rope_scaling == "ntk" and int(self.head_dim * self.rope_fraction) // 2 < 2:
            raise ValueError(
                "model.rope_scaling=ntk changes the base by s^(D/(D-2)): it needs D >= 4 "
                f"rotated dims, but head_dim {self.head_dim} x rope_fraction "
                f"{self.rope_fraction} rotates 2; allowed: pi or yarn, or a wider head"
            )
        if self.yarn_beta <= self.yarn_alpha:
            raise ValueError(
                f"model.yarn_beta={self.yarn_beta} must exceed model.yarn_alpha="
                f"{self.yarn_alpha} (YaRN's ramp runs from alpha to beta rotations)"
            )
        if self.pos_encoding == "fire" and self.arch != "decoder":
            raise ValueError(
                "model.pos_encoding=fire is defined for causal attention (Li et al. 2023 "
                f"normalize by the query position), not model.arch={self.arch}; allowed: "
                "arch=decoder"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_heads``; ``n_heads / K`` for ``'n_heads/K'`` (the
        validator refuses a K that does not divide n_heads); else ``n_heads``."""
        if isinstance(self.n_kv_heads, str):
            return self.n_heads // kv_group(self.n_kv_heads)
        return self.n_kv_heads or self.n_heads

    @property
    def encoder_layers(self) -> int:
        return self.n_encoder_layers or self.n_layers

    @property
    def ffn_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.ffn == "swiglu":  # keeps parameters equal to a 4x GELU FFN (LLaMA)
            return int(8 * self.d_model / 3)
        return 4 * self.d_model

    def resolved(self) -> dict[str, str]:
        """The concrete ``{"init": ..., "embed_scale": ...}`` the model is built with.

        ``init: auto`` is deepnorm for the deepnorm placement (Wang et al. 2022) and
        xavier (Vaswani et al. 2017 as tensor2tensor/fairseq implement it) for every
        other placement, so placements compared under ``auto`` share one init family.
        ``embed_scale: auto`` then completes the init the way its source does: sqrt_d for
        xavier and deepnorm (N(0, d^-1/2) embeddings: unit RMS at the first block), none
        for torch (N(0, 1): unit already) and gpt2 (GPT-2 itself; :meth:`init_warning`
        says when 0.02 embeddings disadvantage the placement or encoding).
        Pure Python: the report calls it without torch.
        """
        init = self.init
        if init == "auto":
            init = "deepnorm" if self.norm_placement == "deepnorm" else "xavier"
        scale = self.embed_scale
        if scale == "auto":
            scale = "sqrt_d" if init in ("xavier", "deepnorm") else "none"
        return {"init": init, "embed_scale": scale}

    @property
    def init_scheme(self) -> str:
        """The concrete init scheme (``resolved()["init"]``)."""
        return self.resolved()["init"]

    def embedding_rms(self) -> dict[str, float]:
        """Expected RMS at init of the ``token`` embeddings (after the embedding scale), the
        ``position`` embeddings added to them (0 if none) and their sum, the ``first_block``
        input (dropout aside). Pure arithmetic from ``resolved()``."""
        r = self.resolved()
        std = embedding_std(r["init"], self.d_model)
        token = {"none": std, "sqrt_d": std * math.sqrt(self.d_model), "norm": 1.0}[
            r["embed_scale"]
        ]
        position = {"sinusoidal": SINUSOID_RMS, "learned": std}.get(self.pos_encoding, 0.0)
        return {
            "token": token,
            "position": position,
            "first_block": math.hypot(token, position),
        }

    def init_warning(self) -> str | None:
        """One sentence when an explicit (non-auto) init/embed_scale combination is known to
        disadvantage this placement or positional encoding, else None.

        Judged on :meth:`embedding_rms` against ``MIN/MAX_FIRST_BLOCK_RMS`` (post-LN and
        deepnorm only: their first attention sees the raw input) and
        ``MAX_SINUSOID_RATIO``, and on one measured failure: a norm over tied N(0, 0.02)
        embeddings (Adam's steps of ``lr`` are large next to 0.02) stayed at chance for
        post- and pre-LN on the quickstart at lr 3e-3 and 1e-2, and the deepnorm init
        (v, out, FFN scaled by beta) with a tied head collapsed to uniform predictions
        there (best val/loss 2.2-2.56 at lr 1e-3..3e-2; untied: 0.004). Inputs of RMS
        ~5.7 (torch init with sqrt_d) kept post-LN at 1.8-2.5 where unit inputs reach 0.3.
        All-auto combinations are warned about only for the tied deepnorm head, which
        ``auto`` cannot change.
        """
        r, rms = self.resolved(), self.embedding_rms()
        combo = f"init={r['init']} with embed_scale={r['embed_scale']}"
        if r["init"] == "deepnorm" and self.tie_embeddings:  # auto cannot untie the head
            return (
                f"{combo}: the beta-scaled deepnorm init with a head tied to the embeddings "
                "collapsed to uniform predictions on the quickstart; set tie_embeddings=false"
            )
        if self.init == "auto" and self.embed_scale == "auto":
            return None
        if r["init"] == "gpt2" and r["embed_scale"] == "norm" and self.tie_embeddings:
            return (
                f"{combo}: normed N(0, 0.02) embeddings tied to the head stayed at chance "
                "for post- and pre-LN on the quickstart; use init=auto"
            )
        # Mix-LN's first floor(fraction * layers) blocks are Post-LN (Li et al. 2024)
        mixln_post = self.norm_placement == "mixln" and (
            self.mixln_post_fraction * max(self.n_layers, self.encoder_layers) >= 1 - 1e-9
        )
        if self.norm_placement in ("post", "deepnorm") or mixln_post:
            first = rms["first_block"]
            if first < MIN_FIRST_BLOCK_RMS:
                return (
                    f"{combo}: first-block inputs of RMS ~{first:.2g} keep "
                    f"{self.norm_placement} attention near uniform at init (its logits "
                    "scale with the input RMS squared); use init=auto"
                )
            if first > MAX_FIRST_BLOCK_RMS:
                return (
                    f"{combo}: first-block inputs of RMS ~{first:.2g} saturate "
                    f"{self.norm_placement} attention at init (its logits scale with the "
                    "input RMS squared); use init=auto"
                )
        if self.pos_encoding == "sinusoidal":
            ratio = rms["position"] / rms["token"]
            if ratio > MAX_SINUSOID_RATIO:
                return (
                    f"{combo}: the sinusoidal table (RMS {SINUSOID_RMS:.2f}) is {ratio:.0f}x "
                    f"the token embeddings (RMS ~{rms['token']:.2g}) and swamps them; "
                    "use init=auto"
                )
            if ratio < 1 / MAX_SINUSOID_RATIO:
                return (
                    f"{combo}: token embeddings of RMS ~{rms['token']:.2g} are "
                    f"{1 / ratio:.0f}x the sinusoidal table (RMS {SINUSOID_RMS:.2f}) and "
                    "swamp the positions; use init=auto"
                )
        return None
