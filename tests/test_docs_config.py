"""docs/config.md, the configuration reference, is generated from the pydantic models and
kept current; every key it lists has a description (tools/config_reference.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from bench.config import RunConfig
from bench.sweeps.spec import SweepSpec
from tools import config_reference

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_reference_is_the_generators_output():
    written = (ROOT / "docs" / "config.md").read_text()
    assert written == config_reference.reference(), (
        f"docs/config.md is out of date; regenerate it: {config_reference.COMMAND}"
    )


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    seen.add(model)
    for info in model.model_fields.values():
        for _, sub in config_reference._sections(info.annotation):
            if sub not in seen:
                _models(sub, seen)
    return seen


def test_every_key_of_a_run_config_and_a_sweep_spec_has_a_description():
    models = _models(RunConfig, set()) | _models(SweepSpec, set())
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        for name, info in m.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, f"add Field(description=...) to {missing}"


def test_the_reference_lists_nested_sections_by_their_dotted_keys():
    text = config_reference.reference()
    for key in ("diagnostics.hessian.top_k", "tune.params.KEY.log", "launcher.gpus_per_worker"):
        assert f"| `{key}` |" in text
    assert "| `search` | section or null, keys as `tune` |" in text  # one table per model
