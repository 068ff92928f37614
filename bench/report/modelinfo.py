"""Each cell's initialisation and embedding scale, read from its runs' config.yaml.

``ModelConfig.resolved()`` names the concrete ``init`` and ``embed_scale`` an
``auto`` setting picks, and ``ModelConfig.init_warning()`` says when an explicit
init disadvantages a norm placement or positional encoding (post-LN and
deepnorm want unit-scale inputs at the first block; a sinusoidal table swamps
embeddings of std 0.02). Both are looked up with ``getattr``: configs from
before they existed show the raw ``model.init`` and "unknown".
"""

from __future__ import annotations

from typing import Any

from bench.report.collect import SweepData

UNKNOWN = "unknown"
# Axes whose values an init can favour: comparing them under one explicit init is suspect.
INIT_SENSITIVE_AXES = ("norm_placement", "pos_encoding")


def _model_config(model: dict[str, Any]) -> Any | None:
    """A validated ModelConfig of a run's model section, or None when it does not validate."""
    from bench.config import ModelConfig

    try:
        return ModelConfig.model_validate(model)
    except Exception:  # a config from another version: fall back to the raw values
        return None


def resolved(model: dict[str, Any]) -> dict[str, str]:
    """{"init": ..., "embed_scale": ...} of a run's model section ("unknown" when not known)."""
    cfg = _model_config(model) if model else None
    fn = getattr(cfg, "resolved", None)
    if callable(fn):
        try:
            out = fn()
            return {"init": str(out.get("init", UNKNOWN)),
                    "embed_scale": str(out.get("embed_scale", UNKNOWN))}  # fmt: skip
        except Exception:
            pass
    init = model.get("init") if model else None
    scheme = getattr(cfg, "init_scheme", None)
    if init == "auto" and isinstance(scheme, str):
        init = f"auto ({scheme})"
    return {"init": str(init) if init is not None else UNKNOWN,
            "embed_scale": str(model.get("embed_scale", UNKNOWN)) if model else UNKNOWN}  # fmt: skip


def init_warning(model: dict[str, Any]) -> str | None:
    """ModelConfig.init_warning() of a run's model section (None when absent or silent)."""
    cfg = _model_config(model) if model else None
    fn = getattr(cfg, "init_warning", None)
    if not callable(fn):
        return None
    try:
        w = fn()
    except Exception:
        return None
    return str(w) if w else None


def cell_model(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The model section of the first run of a cell that recorded one ({} when none did)."""
    for r in rows:
        model = (r.get("config") or {}).get("model")
        if isinstance(model, dict) and model:
            return model
    return {}


def shared_init_warning(data: SweepData, models: dict[str, dict[str, Any]]) -> str | None:
    """A sentence when the sweep compares placements or encodings under one explicit init
    that disadvantages some of the cells."""
    axes = [a for a in INIT_SENSITIVE_AXES if a in data.axes]
    base_init = (data.spec.base.get("model") or {}).get("init")
    inits = {str(m.get("init")) for m in models.values() if m}
    if not axes or len(inits) != 1 or "auto" in inits or inits == {"None"}:
        return None
    hurt = {cell: w for cell, m in models.items() if (w := init_warning(m))}
    if not hurt:
        return None
    init = base_init or next(iter(inits))
    first_cell, first = next(iter(hurt.items()))
    return (f"All cells share model.init={init}, which disadvantages {len(hurt)} of "
            f"{len(models)} cells ({', '.join(hurt)}); differences along "
            f"{' and '.join(axes)} may reflect the initialisation, not the architecture. "
            f"{first_cell}: {first}")  # fmt: skip
