"""Which ``scaled_dot_product_attention`` kernel each attention layer of a model gets.

:class:`~bench.model.attention.Attention` always calls SDPA; PyTorch then picks
a kernel per call from what the call looks like (``select_sdp_backend`` in
ATen's ``transformers/cuda/sdp_utils.cpp`` and ``sdp_utils_cpp.cpp``; the
kernels: FlashAttention-2, Dao 2023; memory-efficient attention, Rabe & Staats
2021 as implemented in xFormers; the math reference). What decides it here:

- **flash** (CUDA): no ``attn_mask`` (``is_causal`` is fine), fp16/bf16, head
  dim <= 256, an sm80..sm121 GPU; training with head dim in (192, 224] is
  refused on sm86/89/120. On CPU the flash kernel takes masks and every float
  dtype, but no dropout.
- **efficient** (CUDA): takes an additive float mask, so ALiBi and T5 biases
  (and key padding) run here; fp32/fp16 on sm50+, bf16 on sm80+; head dim a
  multiple of 8 for 16-bit inputs on tensor-core GPUs (4 for fp32 on sm80+).
- **math** otherwise (and for the diagnostics that differentiate twice,
  :mod:`bench.diagnostics.context`). Every kernel but math needs the value head
  width equal to the query's on CPU, and flash on CUDA too (``check_head_dim_size_cpp``,
  ``check_head_dim_size_flash``); CUDA's efficient kernel takes a wider value if
  both widths meet its alignment. Differential attention (``model.attention=diff``)
  calls SDPA with values twice the query width: math on CPU, efficient on CUDA.
- **none**: sigmoid attention (``model.attention=sigmoid``) calls no SDPA kernel
  (two explicit matmuls, :mod:`bench.model.sigmoid_attention`).

A sliding window (``model.attn_window`` shorter than the sequence) travels in the
additive mask, so it leaves the flash path on CUDA as a bias does. Attention-sink
positions (``model.sink_tokens = k``) lengthen a causal stack's queries and keys by
``k`` (cross-attention: its queries) and add no mask: causality shows them to every
query, and a window's mask keeps them.

PyTorch tries flash, then efficient, then math (on sm90/sm100 with cuDNN >
9.15 it tries cuDNN attention first, except under deterministic algorithms,
which bench turns on by default: ``train.deterministic``). The stack
(:func:`bench.model.attention.attention_inputs`) passes no mask when there is
neither padding nor a positional bias, so every variant without an additive
bias keeps the flash path.

:func:`predict_kernel` is that logic for a GPU that is not here (testable by
capability); :func:`selected_kernel` asks PyTorch itself on the device at hand
(``torch._fused_sdp_choice``), which is what a run records in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.config import ModelConfig
from bench.model.attention_kinds import ATTENTIONS
from bench.model.positional import POSITIONAL, Positional
from bench.model.sink import sink_count

_KERNELS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn"}  # torch.nn.attention.SDPBackend
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class AttentionCall:
    """What SDPA's kernel choice depends on, for one kind of attention layer of a model."""

    role: str  # "self" (decoder-only), "encoder self", "decoder self", "cross"
    n_heads: int
    n_kv_heads: int
    head_dim: int
    t_q: int
    t_k: int
    mask: str  # why an additive mask is passed ("" when none): "alibi bias", "key padding", ...
    is_causal: bool
    dropout: float
    value_dim: int = 0  # the value head width SDPA sees (0: head_dim)
    no_sdpa: str = ""  # why the layer calls no SDPA kernel ("" when it calls one)

    @property
    def v_dim(self) -> int:
        return self.value_dim or self.head_dim

    def tensors(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """q, k, v (and the mask) of batch size 1 shaped like this call, q requiring grad."""
        q = torch.zeros(1, self.n_heads, self.t_q, self.head_dim, device=device, dtype=dtype)
        q.requires_grad_(True)  # training: some kernels refuse shapes only in the backward
        k = torch.zeros(1, self.n_kv_heads, self.t_k, self.head_dim, device=device, dtype=dtype)
        v = torch.zeros(1, self.n_kv_heads, self.t_k, self.v_dim, device=device, dtype=dtype)
        mask = (
            torch.zeros(1, self.n_heads, self.t_q, self.t_k, device=device, dtype=dtype)
            if self.mask
            else None
        )
        return q, k, v, mask


def has_additive_bias(pos_encoding: str) -> bool:
    """Whether the encoding adds a bias to the attention scores (it overrides ``Positional.bias``)."""
    return POSITIONAL[pos_encoding].bias is not Positional.bias


def attention_calls(
    cfg: ModelConfig,
    seq_len: int,
    *,
    src_len: int | None = None,
    padded: bool = False,
    training: bool = True,
) -> list[AttentionCall]:
    """The SDPA calls of one forward of ``cfg``'s model, one per kind of attention layer.

    ``padded``: the batch has source padding (encoder-decoder tasks with
    varying source lengths); a decoder-only batch is right-padded and needs no
    mask under causal attention.
    """
    bias = f"{cfg.pos_encoding} bias" if has_additive_bias(cfg.pos_encoding) else ""
    pad = "key padding" if padded else ""
    dropout = cfg.dropout if training else 0.0
    kind = ATTENTIONS[cfg.attention]
    no_sdpa = "" if kind.uses_sdpa else f"{cfg.attention} attention calls no SDPA kernel"

    def window(t: int) -> str:  # a window shorter than the sequence is a mask
        w = cfg.attn_window
        return "sliding window" if w is not None and w < t else ""

    def call(role: str, t_q: int, t_k: int, masks: tuple[str, ...], causal: bool) -> AttentionCall:
        mask = " + ".join(m for m in masks if m)
        return AttentionCall(
            role,
            cfg.n_heads,
            cfg.kv_heads,
            cfg.head_dim,
            t_q,
            t_k,
            mask,
            causal and not mask,  # with a mask, causality travels inside it
            dropout,
            cfg.head_dim * kind.value_dim_factor,
            no_sdpa,
        )

    t = seq_len + sink_count(cfg, causal=True)  # a causal stack's sinks come first
    if cfg.arch == "decoder":
        return [call("self", t, t, (bias, window(t)), True)]
    s = src_len or seq_len
    return [
        call("encoder self", s, s, (bias, window(s), pad), False),
        call("decoder self", t, t, (bias, window(t)), True),
        call("cross", t, s, (pad,), False),
    ]


def _flash_refusal(
    call: AttentionCall, capability: tuple[int, int], dtype: torch.dtype, training: bool
) -> str:
    """Why CUDA's flash kernel refuses ``call`` ("" when it takes it)."""
    if call.mask:
        return f"an additive mask ({call.mask})"
    if call.v_dim != call.head_dim:
        return f"value head dim {call.v_dim} != query head dim {call.head_dim}"
    if dtype not in _HALF:
        return f"{str(dtype).removeprefix('torch.')} inputs (flash needs fp16/bf16)"
    if call.head_dim > 256:
        return f"head dim {call.head_dim} > 256"
    if not (8, 0) <= capability <= (12, 1):
        return f"sm{capability[0]}{capability[1]} (flash needs sm80..sm121)"
    sm86_89 = (8, 6) <= capability <= (8, 9) or (12, 0) <= capability <= (12, 1)
    if training and sm86_89 and 192 < call.head_dim <= 224:
        return f"training with head dim {call.head_dim} on sm{capability[0]}{capability[1]}"
    if call.is_causal and call.t_q != call.t_k:
        return "is_causal with t_q != t_k"
    return ""


def _efficient_refusal(call: AttentionCall, capability: tuple[int, int], dtype: torch.dtype) -> str:
    """Why CUDA's memory-efficient kernel refuses ``call`` ("" when it takes it)."""
    if not (5, 0) <= capability <= (12, 1):
        return f"sm{capability[0]}{capability[1]} (efficient needs sm50..sm121)"
    allowed: tuple[torch.dtype, ...] = (torch.float16, torch.float32, torch.bfloat16)
    if capability < (8, 0):
        allowed = (torch.float16, torch.float32)
    if dtype not in allowed:
        return f"{str(dtype).removeprefix('torch.')} on sm{capability[0]}{capability[1]}"
    half = dtype in _HALF
    tensor_cores = capability >= (8, 0) or (capability >= (7, 0) and half)
    alignment = 4 if capability >= (8, 0) else 1
    if tensor_cores:
        alignment = max(alignment, 8 if half else 4)
    if call.head_dim % alignment:
        return f"head dim {call.head_dim} not a multiple of {alignment}"
    if call.v_dim % alignment:
        return f"value head dim {call.v_dim} not a multiple of {alignment}"
    return ""


def predict_kernel(
    call: AttentionCall,
    device_type: str,
    dtype: torch.dtype,
    *,
    capability: tuple[int, int] = (8, 0),
    training: bool = True,
) -> tuple[str, str]:
    """``(kernel, reason)``: the SDPA kernel PyTorch picks for ``call``, and why not a faster one.

    ``device_type`` is ``"cuda"`` (``capability`` is the GPU's compute capability)
    or ``"cpu"``. See the module docstring for the rules.
    """
    if call.no_sdpa:
        return "none", call.no_sdpa
    if device_type == "cpu":
        if call.dropout > 0:
            return "math", "dropout (the CPU flash kernel has none)"
        if call.v_dim != call.head_dim:
            return "math", f"value head dim {call.v_dim} != query head dim {call.head_dim}"
        return "flash", ""
    why_not_flash = _flash_refusal(call, capability, dtype, training)
    if not why_not_flash:
        return "flash", ""
    why_not_efficient = _efficient_refusal(call, capability, dtype)
    if not why_not_efficient:
        return "efficient", f"not flash: {why_not_flash}"
    return "math", f"not flash: {why_not_flash}; not efficient: {why_not_efficient}"


def selected_kernel(call: AttentionCall, device: torch.device, dtype: torch.dtype) -> str:
    """The kernel PyTorch itself selects for ``call`` on ``device`` (asked, not predicted).

    ``torch._fused_sdp_choice`` is private: a PyTorch without it (or refusing
    the call) gives ``"unknown"`` rather than failing the run that records it.
    """
    if call.no_sdpa:
        return "none"
    q, k, v, mask = call.tensors(device, dtype)
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    try:
        choice = choose(
            q, k, v, mask, call.dropout, call.is_causal, enable_gqa=call.n_kv_heads != call.n_heads
        )
    except (RuntimeError, TypeError):
        return "unknown"
    return _KERNELS.get(int(choice), f"backend {int(choice)}")


def kernel_summary(
    cfg: ModelConfig,
    seq_len: int,
    device: torch.device,
    dtype: torch.dtype,
    *,
    src_len: int | None = None,
) -> dict[str, str]:
    """``{role: kernel}`` of every attention layer kind of ``cfg`` on ``device`` (training).

    A mask's reason follows the kernel (``"efficient (alibi bias)"``), so a reader
    sees why a layer left the flash path; a layer whose kernel changes when a
    batch has source padding says both (``"flash; efficient with key padding"``).
    """
    out = {}
    plain = attention_calls(cfg, seq_len, src_len=src_len)
    padded = attention_calls(cfg, seq_len, src_len=src_len, padded=True)
    for call, pad_call in zip(plain, padded, strict=True):
        kernel = selected_kernel(call, device, dtype)
        text = f"{kernel} ({call.mask})" if call.mask and not call.no_sdpa else kernel
        with_pad = selected_kernel(pad_call, device, dtype)
        if pad_call.mask != call.mask and with_pad != kernel:
            text += f"; {with_pad} with key padding"
        out[call.role] = text
    return out
