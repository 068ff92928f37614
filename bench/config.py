"""Typed configuration shared by every command.

One flat pydantic model per concern. Every architecture axis is a ``Literal``
field, so validation, ``bench variants``, sweep search spaces and the W&B config
all read their allowed values from here (see :func:`axes`).

Loading order for ``bench COMMAND [CONFIG.yaml] [key=value ...]``:
defaults -> CONFIG.yaml -> ``variant=NAME`` preset (applied to ``model``) ->
dotted overrides. Errors become :class:`ConfigError` with one readable line.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench import presets
from bench.validation import describe


class _Loader(yaml.SafeLoader):
    """Safe YAML, but ``3e-4`` is a float (YAML 1.2) rather than a string (YAML 1.1),
    and a key given twice in one mapping is an error (YAML 1.2 requires unique keys;
    PyYAML would let the last one silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKeyError(
                    f"duplicate key '{key}' at line {line} (first at line {seen[key]}); "
                    "give each key once"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats; never constructs Python objects."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


class DuplicateKeyError(ConfigError):
    """A YAML mapping names the same key twice (the message gives the key and its line)."""


class _Strict(BaseModel):
    """Unknown keys are errors; assignment is validated; inf and nan are refused in every float."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- model

Arch = Literal["decoder", "encoder_decoder"]
NormPlacement = Literal["post", "pre", "sandwich", "deepnorm"]
NormType = Literal["layernorm", "rmsnorm", "scalenorm"]
PosEncoding = Literal["sinusoidal", "learned", "rope", "alibi", "t5", "nope"]
FeedForward = Literal["gelu", "relu", "swiglu"]
Init = Literal["auto", "torch", "gpt2", "xavier", "deepnorm"]
EmbedScale = Literal["auto", "none", "sqrt_d", "norm"]
TrackingMode = Literal["offline", "online", "disabled"]

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


class ModelConfig(_Strict):
    """The transformer. Axis fields are Literals; sizes are positive ints."""

    arch: Arch = "decoder"
    norm_placement: NormPlacement = "pre"
    norm_type: NormType = "layernorm"
    qk_norm: bool = False
    pos_encoding: PosEncoding = "learned"
    rope_base: float = Field(default=10000.0, gt=0)
    rope_fraction: float = Field(default=1.0, gt=0, le=1)
    t5_num_buckets: int = Field(default=32, ge=2)
    t5_max_distance: int = Field(default=128, ge=2)
    d_model: int = Field(default=128, ge=1)
    n_layers: int = Field(default=2, ge=1)
    n_encoder_layers: int | None = Field(default=None, ge=1)  # None: same as n_layers
    n_heads: int = Field(default=4, ge=1)
    n_kv_heads: int | None = Field(default=None, ge=1)  # None: n_heads (MHA); 1: MQA
    d_ff: int | None = Field(default=None, ge=1)  # None: 4*d_model (8/3*d_model for swiglu)
    ffn: FeedForward = "gelu"
    dropout: float = Field(default=0.0, ge=0, lt=1)
    bias: bool = True
    tie_embeddings: bool = True
    init: Init = "auto"  # auto: see resolved()
    # Token embeddings x1 (none), x sqrt(d_model) (sqrt_d) or normed (norm); auto: resolved()
    embed_scale: EmbedScale = "auto"
    max_len: int = Field(default=1024, ge=1)
    vocab_size: int = Field(default=256, ge=2)

    @model_validator(mode="after")
    def _divisibility(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}"
            )
        if self.kv_heads > self.n_heads or self.n_heads % self.kv_heads:
            raise ValueError(
                f"model.n_heads={self.n_heads} must be divisible by "
                f"model.n_kv_heads={self.kv_heads} (1 <= n_kv_heads <= n_heads)"
            )
        if self.pos_encoding == "rope":
            rot = int(self.head_dim * self.rope_fraction) // 2 * 2
            if rot < 2:
                raise ValueError(
                    f"model.rope_fraction={self.rope_fraction} rotates no pair of the "
                    f"head dimension {self.head_dim}; allowed: a fraction rotating >= 2 dims"
                )
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
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
        if self.norm_placement in ("post", "deepnorm"):
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


# ----------------------------------------------------------------------------- task

TaskName = Literal["copy", "reverse", "sort", "recall", "modadd", "scan", "text"]


class TaskConfig(_Strict):
    """What to learn. Data is generated (or read locally) from ``seed``."""

    name: TaskName = "copy"
    seq_len: int = Field(default=16, ge=1)  # problem size / context length at training time
    eval_scales: list[int] = Field(default_factory=lambda: [1, 2, 4])  # x seq_len
    n_symbols: int = Field(default=16, ge=2)  # alphabet of the synthetic probes
    modulus: int = Field(default=23, ge=2)  # modadd
    n_train: int = Field(default=4096, ge=1)  # examples (probes, scan) or windows (text)
    n_val: int = Field(default=256, ge=1)
    batch_size: int = Field(default=32, ge=1)
    seed: int = 0
    paths: list[str] = Field(default_factory=list)  # text: files/folders; [] = stdlib
    hf_dataset: str | None = None  # text: a cached Hugging Face dataset name
    max_bytes: int = Field(default=2_000_000, ge=1)  # text: cap on bytes read
    num_workers: int = Field(default=0, ge=0)


# ----------------------------------------------------------------------------- train

Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]


class TrainConfig(_Strict):
    """Optimisation and the Trainer."""

    max_steps: int = Field(default=300, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int = Field(default=30, ge=0)
    schedule: Schedule = "cosine"
    weight_decay: float = Field(default=0.1, ge=0)
    decay_norms_and_embeddings: bool = False
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.98, ge=0, lt=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    precision: Precision = "auto"  # auto: bf16-mixed on GPU, 32-true on CPU
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(default=1, ge=1)
    val_every: int = Field(default=100, ge=1)  # steps between validations
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int | None = Field(default=None, ge=1)  # None: at each validation
    threads: int | None = Field(default=None, ge=1)  # torch intra-op threads
    seed: int = 0
    deterministic: bool = True
    progress_bar: bool | None = None  # None: only when stderr is a terminal


# ----------------------------------------------------------------------------- tracking


class TrackingConfig(_Strict):
    """Where a run's records go: the run directory and W&B."""

    mode: TrackingMode = "offline"
    project: str = "bench"
    entity: str | None = None
    group: str | None = None
    job_type: str = "train"
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    out_dir: str = "runs"  # parent of run directories
    run_dir: str | None = None  # exact run directory (sweeps set this)
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict)  # e.g. cell, trial


# ----------------------------------------------------------------------------- diagnostics


class DiagnosticsConfig(_Strict):
    """Switches and intervals for the measurements in bench/diagnostics."""

    gradients: bool = True
    gradients_every: int = Field(default=25, ge=1)
    noise_scale: bool = True
    attention_entropy: bool = True
    hessian: bool = False
    hessian_steps: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0])  # fractions
    hessian_top_k: int = Field(default=3, ge=1)
    hessian_iters: int = Field(default=20, ge=1)
    landscape: bool = False
    landscape_resolution: int = Field(default=11, ge=3)
    landscape_every: int | None = Field(
        default=None, ge=1
    )  # trajectory snapshots; None: ~40 per run
    landscape_batches: int = Field(default=2, ge=1)  # evaluation batches per grid point
    throughput: bool = True
    peak_flops: float | None = Field(default=None, gt=0)  # override the peak used for MFU
    # attention maps of fixed validation examples at init and at the end (attention_maps.py)
    attention_maps: bool = True
    attention_maps_examples: int = Field(
        default=4, ge=1
    )  # examples recorded (bench attention --example)
    attention_maps_max_len: int = Field(
        default=64, ge=1
    )  # positions kept per axis (longer: cropped)
    attention_maps_max_params: int = Field(default=20_000_000, ge=0)  # larger models: no maps


# ----------------------------------------------------------------------------- run


class RunConfig(_Strict):
    """Everything one training run needs; plain data, safe to ship to a worker."""

    variant: str | None = None  # the preset applied to ``model``, for the record
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    def flat(self) -> dict[str, Any]:
        """Flat ``section.key`` dict, the form W&B and reports use."""
        return flatten(self.model_dump(mode="json"))


# ----------------------------------------------------------------------------- helpers


def axes() -> dict[str, tuple[Any, ...]]:
    """Every ``Literal`` (and bool) field of ModelConfig with its allowed values."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, field in ModelConfig.model_fields.items():
        ann = field.annotation
        if typing.get_origin(ann) is Literal:
            out[name] = typing.get_args(ann)
        elif ann is bool:
            out[name] = (False, True)
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``d["a"]["b"] = value`` for ``key="a.b"``, creating dicts on the way."""
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: '{p}' is a value, not a section")
        d = nxt
    d[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A command-line value, read as a YAML scalar (``3e-4``, ``true``, ``[1, 2]``)."""
    try:
        return safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(args: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "variant=llama"]`` -> ``{"a.b": 1, "variant": "llama"}``."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"'{arg}': expected key=value (e.g. model.n_heads=8)")
        try:
            out[key.strip()] = parse_value(value)
        except DuplicateKeyError as e:
            raise ConfigError(f"'{arg}': {e}") from None
    return out


MAX_YAML_BYTES = 10 << 20  # a config or spec is a few KB; anything near this is a mistake


def read_text_file(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's contents, or a ConfigError naming the path and the problem."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; expected a YAML {what}")
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(
                f"{p}: {p.stat().st_size} bytes is too large for a YAML {what} "
                f"(allowed: up to {MAX_YAML_BYTES >> 20} MiB)"
            )
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def load_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Safe-load a YAML mapping, with one-line errors (encoding, syntax, shape, duplicates)."""
    p = Path(path)
    text = read_text_file(p, what)
    try:
        data = safe_load(text)
    except DuplicateKeyError as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a {what}") from None
    if data is None:
        raise ConfigError(
            f"{p}: the file is empty; expected a mapping of sections (e.g. 'model:', 'train:')"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(data).__name__}")
    return data


def validate(cls: type[BaseModel], data: Mapping[str, Any], source: str = "") -> Any:
    """``cls.model_validate`` with the error turned into a ConfigError line."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, cls, source)) from None


def build_run_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve defaults -> base -> YAML file -> variant preset -> dotted overrides."""
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    data: dict[str, Any] = {}
    for key, value in flatten(dict(base or {})).items():
        set_dotted(data, key, value)
    source = ""
    if path is not None:
        source = str(path)
        for key, value in flatten(load_yaml(path)).items():
            set_dotted(data, key, value)
    overrides = dict(overrides)
    variant = overrides.pop("variant", data.get("variant"))
    if variant is not None:
        preset = presets.load(str(variant))
        model = data.setdefault("model", {})
        if not isinstance(model, dict):
            raise ConfigError(f"{source or 'config'}: 'model' must be a mapping")
        for key, value in flatten(preset).items():
            set_dotted(model, key, value)
        # An explicit model.* in the file or overrides beats the preset.
        for key, value in flatten(load_yaml(path)).items() if path else []:
            if key.startswith("model."):
                set_dotted(data, key, value)
        data["variant"] = str(variant)
    for key, value in overrides.items():
        set_dotted(data, key, value)
    return validate(RunConfig, data, source)


def dump_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
