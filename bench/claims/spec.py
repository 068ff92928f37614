"""The claim file: what a paper says, the sweep that tests it and the rule that judges it.

A claim file (``sweeps/claims/<id>.yaml``) holds:

``title``, ``citation``, ``url``, ``statement``
    the paper, and its finding in one sentence (the paper's words where possible);
``scale``
    why this task, model and budget: the smallest that make the test meaningful on
    2 CPU cores, found by measurement, and what that size cannot show;
``sweep``
    an ordinary compare spec (``bench/sweeps/spec.py``) without ``name``; the sweep
    is named ``claim-<id>``. Or ``sweep_of: <other claim id>``: judge another
    claim's runs (two claims about the same runs cost one sweep);
``budgets``
    ``quick`` and ``full``: dotted overrides of the sweep (``budget.max_steps: 40``,
    ``seeds: 1``); ``full`` is what the README's numbers come from, ``quick`` only
    exercises the pipeline;
``metrics``
    named per-run numbers (:mod:`bench.claims.metrics`);
``tests``
    the decision rule (:mod:`bench.claims.rules`): every test must hold for
    "reproduced"; one that fails makes "not reproduced";
``requires``
    preconditions without which the claim cannot be judged ("inconclusive"), e.g.
    every cell fits its training length;
``figures``
    what the report draws.

Loading validates everything against the sweep's own axes before any run starts.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.config import ConfigError, load_yaml
from bench.validation import describe

CLAIM_DIR = Path(__file__).resolve().parent / "files"
BUDGETS = ("quick", "full")
_ID = r"^[a-z0-9][a-z0-9-]*$"

Selector = dict[str, Any]  # axis -> value ("pos_encoding: alibi", "train.lr: 0.01")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    """One number per run, or per seed of a group of cells (``over``).

    ``key``: a final metric (``val/loss``, ``val/loss@4x``: ``@Nx`` is N times the
    training length), or with ``steps`` a metric of ``metrics.csv`` reduced over the
    run (``cond/attn_logit_max/*``: ``*`` takes every layer, then max or min).
    ``minus``: subtract another final metric (``val/loss@4x`` minus ``val/loss@1x``).
    ``over`` + ``reduce: lr_sensitivity``: collapse one axis (the learning rate) per
    seed into Wortsman et al.'s LR sensitivity (:mod:`bench.claims.metrics`).
    ``transform: log10``: judge the base-10 logarithm of each run's value, for a
    quantity that spans orders of magnitude across runs (attention logits of 1e1 and
    1e4), where a contrast of raw means is dominated by its largest run.
    """

    key: str
    minus: str | None = None
    steps: Literal["max", "min", "last"] | None = None
    over: str | None = None
    reduce: Literal["lr_sensitivity"] | None = None
    transform: Literal["log10"] | None = None
    label: str = ""
    lower_is_better: bool = True
    # a run that diverged or failed counts as this metric's chance value (the
    # baseline's), not as a missing run: a diverging variant must not look better
    diverged_as_chance: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        if (self.over is None) != (self.reduce is None):
            raise ValueError("'over' and 'reduce' go together")
        if self.steps is None and "*" in self.key:
            raise ValueError(f"key {self.key!r}: '*' needs steps: max|min|last")
        return self


class RuleTest(_Strict):
    """One test of the decision rule (see :mod:`bench.claims.rules`)."""

    kind: Literal["better", "not_worse", "gap_shrinks", "at_most", "at_least"]
    metric: str
    a: Selector
    b: Selector | None = None  # better / not_worse / gap_shrinks
    # gap_shrinks: the gap b - a (a better) is larger under ``where`` than under ``then``
    where: Selector | None = None
    then: Selector | None = None
    margin: float = Field(0.0, ge=0)
    value: float | None = None  # at_most / at_least
    says: str = ""  # the test in words, for the report

    @model_validator(mode="after")
    def _fields(self) -> RuleTest:
        pairs = self.kind in ("better", "not_worse", "gap_shrinks")
        if pairs and self.b is None:
            raise ValueError(f"kind {self.kind}: needs 'b' (the cell it is compared with)")
        if self.kind == "gap_shrinks" and (self.where is None or self.then is None):
            raise ValueError("kind gap_shrinks: needs 'where' and 'then'")
        if self.kind in ("at_most", "at_least") and self.value is None:
            raise ValueError(f"kind {self.kind}: needs 'value'")
        return self


class Requirement(_Strict):
    """Every selected cell's mean ``metric`` at least (or at most) ``value``."""

    metric: str
    cells: Selector | Literal["all"] = "all"
    at_least: float | None = None
    at_most: float | None = None
    says: str = ""

    @model_validator(mode="after")
    def _bound(self) -> Requirement:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least and at_most")
        return self


class FigureSpec(_Strict):
    """``cells``: each run's metric per cell; ``lengths``: metric against eval length;
    ``axis``: metric against one axis (``x``), one line per value of ``by``."""

    kind: Literal["cells", "lengths", "axis"]
    metric: str
    x: str | None = None
    by: str | None = None
    log_x: bool = False


class ClaimSpec(_Strict):
    """A claim file (see the module docstring)."""

    id: str = Field(pattern=_ID)
    title: str
    citation: str
    url: str
    statement: str
    scale: str
    # a claim's rule changes only as a new version, judged on seed offsets no earlier
    # version's decision looked at; ``history`` says what changed and why
    version: int = Field(1, ge=1)
    history: str = ""
    sweep: dict[str, Any] | None = None
    sweep_of: str | None = Field(None, pattern=_ID)
    budgets: dict[Literal["quick", "full"], dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, MetricSpec]
    tests: list[RuleTest] = Field(min_length=1)
    requires: list[Requirement] = Field(default_factory=list)
    figures: list[FigureSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> ClaimSpec:
        if (self.sweep is None) == (self.sweep_of is None):
            raise ValueError("give exactly one of 'sweep' and 'sweep_of'")
        if self.sweep_of is not None and self.budgets:
            raise ValueError("budgets: belong to the claim that owns the sweep, not sweep_of")
        if self.sweep is not None and "name" in self.sweep:
            raise ValueError("sweep.name: set by bench reproduce (claim-<id>); remove it")
        named = set(self.metrics)
        used = [t.metric for t in self.tests] + [r.metric for r in self.requires]
        used += [f.metric for f in self.figures]
        for m in used:
            if m not in named:
                raise ValueError(f"metric {m!r} is not defined under metrics ({sorted(named)})")
        return self

    @property
    def sweep_id(self) -> str:
        """The claim whose sweep holds the runs (itself unless ``sweep_of``)."""
        return self.sweep_of or self.id


def sweep_name(claim_id: str) -> str:
    return f"claim-{claim_id}"


def names() -> list[str]:
    """Every shipped claim id, sorted."""
    return sorted(p.stem for p in CLAIM_DIR.glob("*.yaml"))


def load_claim(name_or_path: str | Path) -> ClaimSpec:
    """A claim by id (shipped) or by path; ConfigError in one line when it is malformed."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CLAIM_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"claim {name_or_path!r}: no such claim; allowed: {', '.join(names())} "
                "or a path to a claim file"
            )
    data = load_yaml(path, "claim")
    data.setdefault("id", path.stem)
    try:
        claim = ClaimSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, ClaimSpec, str(path))) from None
    if claim.id != path.stem:
        raise ConfigError(f"{path}: id {claim.id!r} differs from the file name {path.stem!r}")
    return claim


def sweep_data(claim: ClaimSpec, budget: str, seed_offset: int = 0) -> dict[str, Any]:
    """The claim's compare spec for ``budget`` as a plain mapping (what ``bench sweep`` reads).

    ``seed_offset`` k: the sampler seed + k and every training seed + 1000 k, so a
    rerun measures fresh seeds while the data stay the same.
    """
    if claim.sweep is None:
        raise ValueError(f"claim {claim.id} judges the runs of {claim.sweep_of}")
    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget}: allowed: {', '.join(BUDGETS)}")
    data: dict[str, Any] = {"name": sweep_name(claim.id), **copy.deepcopy(claim.sweep)}
    for key, value in (claim.budgets.get(budget) or {}).items():  # type: ignore[call-overload]
        set_path(data, key, value)
    data.setdefault("description", f"{claim.title}: {claim.statement}")
    if seed_offset:
        data["seed"] = int(data.get("seed", 0)) + seed_offset
        train = data.setdefault("base", {}).setdefault("train", {})
        train["seed"] = int(train.get("seed", 0)) + 1000 * seed_offset
    return data


def axis_names(sweep: dict[str, Any]) -> list[str]:
    """The compare axes as the report names them (``model.`` dropped)."""
    return [k.removeprefix("model.") for k in (sweep.get("compare") or {})]


def selector_matches(selector: Selector, axes: dict[str, Any]) -> bool:
    """Whether a cell with these axis values (short names -> values) is selected."""
    return all(_same(axes.get(k.removeprefix("model.")), v) for k, v in selector.items())


def _same(cell_value: Any, wanted: Any) -> bool:
    if isinstance(cell_value, bool) or isinstance(wanted, bool):
        return str(cell_value).lower() == str(wanted).lower()
    try:
        return float(cell_value) == float(wanted)
    except (TypeError, ValueError):
        return str(cell_value) == str(wanted)


def scaled_key(key: str, train_length: int | None) -> str:
    """``val/loss@4x`` -> ``val/loss@128`` for training length 32 (``@1x``: the length itself)."""
    m = re.search(r"@(\d+)x$", key)
    if not m or not train_length:
        return key
    return f"{key[: m.start()]}@{int(m.group(1)) * train_length}"


def check_selectors(claim: ClaimSpec, sweep: dict[str, Any], where: str) -> None:
    """Every selector names an axis of the sweep and a value it has (ConfigError otherwise)."""
    compare = {k.removeprefix("model."): v for k, v in (sweep.get("compare") or {}).items()}
    sels: list[tuple[str, Selector]] = []
    for i, t in enumerate(claim.tests):
        sels += [(f"tests.{i}.{n}", s) for n in ("a", "b", "where", "then") if (s := getattr(t, n))]
    for i, r in enumerate(claim.requires):
        if isinstance(r.cells, dict):
            sels.append((f"requires.{i}.cells", r.cells))
    for name, m in claim.metrics.items():
        if m.over is not None:
            sels.append((f"metrics.{name}.over", {m.over: None}))
    for loc, sel in sels:
        for k, v in sel.items():
            axis = k.removeprefix("model.")
            if axis not in compare:
                raise ConfigError(
                    f"{where}: {loc}: {k!r} is not a compared axis; allowed: {', '.join(compare)}"
                )
            if v is not None and not any(_same(x, v) for x in compare[axis]):
                raise ConfigError(
                    f"{where}: {loc}: {k}={v!r} is not one of its values {compare[axis]}"
                )


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted path; a rest of the path that is itself a key (``compare``'s
    ``model.pos_encoding``, ``tune.params``' ``train.lr``) is used whole."""
    node = data
    parts = key.split(".")
    while len(parts) > 1:
        rest = ".".join(parts)
        if rest in node or (node is not data and _dotted_keys(node)):
            break
        child = node.get(parts[0])
        if not isinstance(child, dict):
            child = node[parts[0]] = {}
        node, parts = child, parts[1:]
    node[".".join(parts)] = value


def _dotted_keys(node: dict[str, Any]) -> bool:
    """A mapping keyed by dotted config keys (``compare``, ``tune.params``)."""
    return any("." in k for k in node)
