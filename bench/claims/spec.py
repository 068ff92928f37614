"""The claim file: what a paper says, the sweep that tests it and the rule that judges it.

A claim file (``sweeps/claims/<id>.yaml``) holds:

``title``, ``citation``, ``url``, ``statement``
    the paper, and its finding in one sentence (the paper's words where possible);
``scale``
    why this task, model and budget: the smallest that make the test meaningful on
    2 CPU cores, found by measurement (what the pilot measured, at which offsets);
``caveat``
    one sentence: what this scale cannot show (printed beside the verdict);
``sweep``
    an ordinary compare spec (``bench/sweeps/spec.py``) without ``name``; the sweep
    is named ``claim-<id>``. Or ``sweep_of: <other claim id>``: judge another
    claim's runs (two claims about the same runs cost one sweep). A claim's seed
    runs vary the data too (``seed_data``: each replicate draws its own task data);
``budgets``
    ``quick`` and ``full``: dotted overrides of the sweep (``budget.max_steps: 40``,
    ``seeds: 1``); ``full`` is what the README's numbers come from, ``quick`` only
    exercises the pipeline;
``metrics``
    named per-run numbers (:mod:`bench.claims.metrics`): the key, the best possible
    value (``best``) and what a diverged / pruned run counts as (``on_failure``);
``tests``
    the decision rule (:mod:`bench.claims.rules`). Each test has a ``role``:
    ``evidence`` (decides the verdict), ``control`` (a negative control where the
    paper predicts no effect, or a positive control the setup must show; one that
    fails makes the claim inconclusive) or ``sanity`` (holds by construction, e.g.
    normalized queries and keys bound the logits: reported, never counted). Each
    names its smallest effect of interest ``sesoi`` (kinds better, not_worse,
    equivalent, gap_shrinks, near) or threshold ``value`` (at_most, at_least, near),
    in the metric's units, and ``why`` it has that size;
``requires``
    at least one precondition without which the claim cannot be judged
    ("inconclusive"), e.g. every cell fits its training length, or (``some: true``)
    some cell is above chance where the tests compare;
``no_control``
    when no test has ``role: control``: why no control is possible;
``version``, ``versions``
    the current version, and each earlier one with the seed offsets its decision saw
    and what changed (``{version: 1, offsets: [0, 1], why: ...}``). A version is
    judged (``--budget full``) only at seed offsets no earlier version saw;
``figures``
    what the report draws.

Loading validates everything against the sweep's own axes before any run starts, and
refuses a test that duplicates another (the same contrast of the same cells on the
same metric, up to sign): two tests of one effect would count it twice.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from bench.config import ConfigError, load_yaml
from bench.validation import describe

CLAIM_DIR = Path(__file__).resolve().parent / "files"
BUDGETS = ("quick", "full")
JUDGING_BUDGET = "full"  # the budget whose verdicts are pre-registered (versions' offsets)
_ID = r"^[a-z0-9][a-z0-9-]*$"
# a seed offset moves training seeds by this much per unit, and data seeds too
SEED_STRIDE = 1000

Selector = dict[str, Any]  # axis -> value ("pos_encoding: alibi", "train.lr: 0.01")

PAIR_KINDS = ("better", "not_worse", "equivalent")
LEVEL_KINDS = ("at_most", "at_least", "near")
SESOI_KINDS = ("better", "not_worse", "equivalent", "gap_shrinks", "near")
VALUE_KINDS = ("at_most", "at_least", "near")
FAILURE_POLICIES = ("worst", "init_cap", "recorded", "exclude")
LAST = "{last}"  # in a metrics.csv key: the highest layer / block index the run logged


def _non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("empty; say it in words")
    return text


Words = Annotated[str, AfterValidator(_non_blank)]  # required prose that cannot be blank


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _renamed(data: Any, old: str, new: str) -> None:
    if isinstance(data, dict) and old in data:
        raise ValueError(f"{old!r}: replaced by {new}")


class MetricSpec(_Strict):
    """One number per run, or per seed of a group of cells (``over``).

    ``key``: a final metric (``val/loss``, ``val/loss@4x``: ``@Nx`` is N times the
    training length), or with ``steps`` a metric of ``metrics.csv`` reduced over the
    run (``cond/attn_logit_max/*``: ``*`` takes every layer, then max or min).
    ``minus``: subtract another final metric (``val/loss@4x`` minus ``val/loss@1x``).
    ``over`` + ``reduce: lr_sensitivity``: collapse one axis (the learning rate) per
    seed into Wortsman et al.'s LR sensitivity (:mod:`bench.claims.metrics`);
    ``over`` + ``reduce: loglog_slope``: per seed, the least-squares slope of
    log(metric) against log(axis value) (``model.n_layers``: Xiong et al. 2020's
    gradient norm ~ L^-1/2 has slope -0.5).
    ``steps: first``: the first logged value (at initialization, step 0); a key with
    ``{last}`` (``cond/ffn_out_grad_norm/block_{last}``) reads the highest-numbered
    layer or block the run logged, so cells of different depths read their last one.
    ``transform: log10``: judge the base-10 logarithm of each run's value, for a
    quantity that spans orders of magnitude across runs (attention logits of 1e1 and
    1e4), where a contrast of raw means is dominated by its largest run.

    ``best``: the best possible value (0 for a loss, 1 for an accuracy). With the
    task's chance level (the run baselines) it makes the two *bounds*: a run within
    ``bound_tol`` (default 2% of |chance - best|) of ``best`` is at the ceiling, of
    chance at the floor; a contrast between cells whose runs all sit at one bound is
    censored (:mod:`bench.claims.rules`).

    ``on_failure``: what a diverged, pruned or stalled run counts as
    (:func:`bench.claims.metrics.failure_policy`): ``worst`` (final metrics and
    differences: the worse of chance and the worst counted run), ``init_cap`` (LR
    sensitivity: the loss at initialization), ``recorded`` (metrics over steps: what
    was logged up to the failure) or ``exclude`` (left out, named). Default: the
    first that fits the metric's form.
    """

    key: str
    minus: str | None = None
    steps: Literal["max", "min", "first", "last"] | None = None
    over: str | None = None
    reduce: Literal["lr_sensitivity", "loglog_slope"] | None = None
    transform: Literal["log10"] | None = None
    label: str = ""
    lower_is_better: bool = True
    best: float | None = None
    bound_tol: float | None = Field(None, gt=0)
    on_failure: Literal["worst", "init_cap", "recorded", "exclude"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        _renamed(data, "diverged_as_chance", "on_failure: worst | init_cap | recorded | exclude")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        if (self.over is None) != (self.reduce is None):
            raise ValueError("'over' and 'reduce' go together")
        if self.steps is None and ("*" in self.key or LAST in self.key):
            raise ValueError(f"key {self.key!r}: '*' and {LAST} need steps: max|min|first|last")
        if "*" in self.key and LAST in self.key:
            raise ValueError(f"key {self.key!r}: '*' (every layer) or {LAST} (the last), not both")
        if self.steps is not None and self.minus is not None:
            raise ValueError("'minus' takes final metrics; not with 'steps'")
        allowed = self.allowed_failure_policies
        if self.on_failure is not None and self.on_failure not in allowed:
            raise ValueError(
                f"on_failure: {self.on_failure} does not fit this metric; allowed: "
                + ", ".join(allowed)
            )
        return self

    @property
    def allowed_failure_policies(self) -> tuple[str, ...]:
        """``recorded`` for metrics over steps, ``init_cap`` for LR sensitivity,
        ``worst`` for final metrics and differences; ``exclude`` for any."""
        if self.steps is not None:
            return ("recorded", "exclude")
        if self.reduce == "lr_sensitivity":
            return ("init_cap", "exclude")
        return ("worst", "exclude")

    @property
    def failure_policy(self) -> str:
        return self.on_failure or self.allowed_failure_policies[0]


Role = Literal["evidence", "control", "sanity"]


class RuleTest(_Strict):
    """One test of the decision rule (see :mod:`bench.claims.rules` for each kind's
    effect and decision)."""

    kind: Literal["better", "not_worse", "equivalent", "gap_shrinks", "at_most", "at_least", "near"]
    metric: str
    a: Selector
    b: Selector | None = None  # better / not_worse / equivalent / gap_shrinks
    # gap_shrinks: the gap b - a (a better) is larger under ``where`` than under ``then``
    where: Selector | None = None
    then: Selector | None = None
    role: Role = "evidence"
    # the smallest effect of interest, in the metric's units (see the module docstring)
    sesoi: float | None = Field(None, gt=0)
    value: float | None = None  # at_most / at_least / near: the threshold or target
    why: Words  # why the SESOI / threshold has this size
    says: str = ""  # the test in words, for the report

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        _renamed(data, "margin", "sesoi (the smallest effect of interest) and why")
        return data

    @model_validator(mode="after")
    def _fields(self) -> RuleTest:
        k = self.kind
        if k in (*PAIR_KINDS, "gap_shrinks") and self.b is None:
            raise ValueError(f"kind {k}: needs 'b' (the cell it is compared with)")
        if k in LEVEL_KINDS and self.b is not None:
            raise ValueError(f"kind {k}: reads one cell ('a'); remove 'b'")
        if (k == "gap_shrinks") != (self.where is not None and self.then is not None):
            raise ValueError(
                "kind gap_shrinks: needs 'where' and 'then'"
                if k == "gap_shrinks"
                else f"kind {k}: 'where' and 'then' belong to gap_shrinks"
            )
        if k in SESOI_KINDS and self.sesoi is None:
            raise ValueError(f"kind {k}: needs 'sesoi' (the smallest effect of interest, > 0)")
        if k not in SESOI_KINDS and self.sesoi is not None:
            raise ValueError(f"kind {k}: 'sesoi' is not used (its threshold is 'value')")
        if k in VALUE_KINDS and self.value is None:
            raise ValueError(f"kind {k}: needs 'value' (the threshold or target)")
        if k not in VALUE_KINDS and self.value is not None:
            raise ValueError(f"kind {k}: 'value' is not used (its threshold is 'sesoi')")
        return self

    def contrast(self) -> dict[tuple[tuple[str, str], ...], float]:
        """The cells this test reads with their weights (effect = sum w * mean),
        before orienting by the metric's direction."""
        if self.kind in LEVEL_KINDS:
            return {_canon(self.a): 1.0}
        if self.kind == "gap_shrinks":
            assert self.b is not None and self.where is not None and self.then is not None
            out: dict[tuple[tuple[str, str], ...], float] = {}
            for ctx, w in ((self.where, 1.0), (self.then, -1.0)):
                out[_canon({**self.b, **ctx})] = w
                out[_canon({**self.a, **ctx})] = -w
            return out
        assert self.b is not None
        return {_canon(self.b): 1.0, _canon(self.a): -1.0}


def _canon(selector: Selector) -> tuple[tuple[str, str], ...]:
    """A selector as a comparable key (``model.`` dropped, 0.1 == 1e-1, false == False)."""
    return tuple(sorted((k.removeprefix("model."), _canon_value(v)) for k, v in selector.items()))


def _canon_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v).lower() if str(v).lower() in ("true", "false") else str(v)


def _family(kind: str) -> str:
    return "level" if kind in LEVEL_KINDS else "difference"


def duplicate_of(tests: list[RuleTest]) -> tuple[int, int] | None:
    """(j, i): test j duplicates an earlier test i (same metric, same kind family, the
    same cells with the same weights up to overall sign); None when none does."""
    for j, t in enumerate(tests):
        c = t.contrast()
        neg = {k: -w for k, w in c.items()}
        for i in range(j):
            u = tests[i]
            same_kind = u.metric == t.metric and _family(u.kind) == _family(t.kind)
            if same_kind and u.contrast() in (c, neg):
                return j, i
    return None


class Requirement(_Strict):
    """Every selected cell's mean ``metric`` at least (or at most) ``value``; with
    ``some``, at least one selected cell's (e.g. "some encoding is above chance at 2L,
    else no comparison there can inform")."""

    metric: str
    cells: Selector | Literal["all"] = "all"
    at_least: float | None = None
    at_most: float | None = None
    some: bool = False
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


class EarlierVersion(_Strict):
    """An earlier version of the claim: the seed offsets its decision saw, and why it
    changed. The current version is judged only at offsets none of these saw."""

    version: int = Field(ge=1)
    offsets: list[int] = Field(min_length=1)
    why: Words


class ClaimSpec(_Strict):
    """A claim file (see the module docstring)."""

    id: str = Field(pattern=_ID)
    title: str
    citation: str
    url: str
    statement: str
    scale: str
    caveat: Words  # one sentence: what this scale cannot show
    version: int = Field(1, ge=1)
    versions: list[EarlierVersion] = Field(default_factory=list)
    history: str = ""  # prose beside ``versions``, when needed
    sweep: dict[str, Any] | None = None
    sweep_of: str | None = Field(None, pattern=_ID)
    budgets: dict[Literal["quick", "full"], dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, MetricSpec]
    tests: list[RuleTest] = Field(min_length=1)
    requires: list[Requirement] = Field(min_length=1)
    no_control: str | None = None  # why no test can be a control
    figures: list[FigureSpec] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(None)  # the file it was loaded from (pre-registration)
    _sha256: str | None = PrivateAttr(None)  # of the bytes it was loaded from

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
        self._check_roles()
        self._check_versions()
        return self

    def _check_roles(self) -> None:
        roles = [t.role for t in self.tests]
        if "evidence" not in roles:
            raise ValueError("tests: none has role evidence (the tests that decide the verdict)")
        has_control = "control" in roles
        if not has_control and not (self.no_control or "").strip():
            raise ValueError(
                "tests: no test has role: control; add a control (where the paper predicts "
                "no effect) or say why none is possible in no_control"
            )
        if has_control and self.no_control is not None:
            raise ValueError("no_control: given, but a test has role: control; remove one")
        dup = duplicate_of(self.tests)
        if dup is not None:
            j, i = dup
            raise ValueError(
                f"tests.{j} duplicates tests.{i} (the same contrast of the same cells on "
                f"metric {self.tests[j].metric!r}); keep one"
            )

    def _check_versions(self) -> None:
        seen = [v.version for v in self.versions]
        if len(set(seen)) != len(seen):
            raise ValueError("versions: a version is listed twice")
        for v in self.versions:
            if v.version >= self.version:
                raise ValueError(
                    f"versions: version {v.version} is not earlier than version {self.version}"
                )

    @property
    def sweep_id(self) -> str:
        """The claim whose sweep holds the runs (itself unless ``sweep_of``)."""
        return self.sweep_of or self.id

    @property
    def path(self) -> Path | None:
        """The claim file this spec was loaded from (None when built in code)."""
        return self._path

    @property
    def loaded_sha256(self) -> str | None:
        """sha256 of the bytes this spec was validated from (None when built in code)."""
        return self._sha256

    @property
    def seen_offsets(self) -> dict[int, list[int]]:
        """Earlier version -> the seed offsets its decision saw."""
        return {v.version: sorted(v.offsets) for v in self.versions}


def select_claims(wanted: list[str]) -> list[ClaimSpec]:
    """The named claims (all shipped ones when none), plus the owners of ``sweep_of``."""
    chosen = [load_claim(n) for n in (wanted or names())]
    if not chosen:
        raise ConfigError(f"no claims in {CLAIM_DIR}")
    ids = {c.id for c in chosen}
    for c in list(chosen):
        if c.sweep_of and c.sweep_of not in ids:
            owner = load_claim(c.sweep_of)
            chosen.insert(chosen.index(c), owner)
            ids.add(owner.id)
    return chosen


def check_request(
    names: list[str], budget: str, seed_offset: int = 0, workers: int | None = None
) -> list[ClaimSpec]:
    """What ``bench reproduce`` was asked: its options in range and the claims it names
    (:func:`select_claims`, each allowed at this offset: :func:`check_offset`), else a
    one-line ConfigError. Claim files only: no Optuna, sweeps or report code loads."""
    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget}: allowed: {', '.join(BUDGETS)}")
    if seed_offset < 0:
        raise ConfigError(f"--seed-offset {seed_offset}: allowed: an integer >= 0")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: allowed: an integer >= 1")
    claims = select_claims(names)
    for c in claims:
        check_offset(c, budget, seed_offset)
    return claims


def check_offset(claim: ClaimSpec, budget: str, seed_offset: int) -> None:
    """ConfigError when ``budget`` judges and an earlier version saw ``seed_offset``.

    Only the judging budget (``full``) is pre-registered: ``quick`` exercises the
    pipeline and its verdicts decide nothing.
    """
    if budget != JUDGING_BUDGET:
        return
    if any(seed_offset in offs for offs in claim.seen_offsets.values()):
        seen = "; ".join(
            f"{v}: {', '.join(map(str, offs))}" for v, offs in sorted(claim.seen_offsets.items())
        )
        raise ConfigError(
            f"claim {claim.id}: --seed-offset {seed_offset}: version {claim.version} must be "
            f"judged on seed offsets no earlier version saw ({seen})"
        )


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
    data = load_yaml(path, "claim")  # checks the file exists and is YAML, in one line
    raw = path.read_bytes()
    data.setdefault("id", path.stem)
    try:
        claim = ClaimSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, ClaimSpec, str(path))) from None
    if claim.id != path.stem:
        raise ConfigError(f"{path}: id {claim.id!r} differs from the file name {path.stem!r}")
    claim._path = path.resolve()
    claim._sha256 = hashlib.sha256(raw).hexdigest()
    return claim


def sweep_data(claim: ClaimSpec, budget: str, seed_offset: int = 0) -> dict[str, Any]:
    """The claim's compare spec for ``budget`` as a plain mapping (what ``bench sweep`` reads).

    Replicates vary the data (``seed_data``): each seed run draws its task data from
    its own seed. ``seed_offset`` k: the sampler seed + k, and every training and data
    seed + 1000 k, so a rerun measures fresh seeds on fresh data.
    """
    if claim.sweep is None:
        raise ValueError(f"claim {claim.id} judges the runs of {claim.sweep_of}")
    if budget not in BUDGETS:
        raise ConfigError(f"--budget {budget}: allowed: {', '.join(BUDGETS)}")
    data: dict[str, Any] = {"name": sweep_name(claim.id), **copy.deepcopy(claim.sweep)}
    for key, value in (claim.budgets.get(budget) or {}).items():  # type: ignore[call-overload]
        set_path(data, key, value)
    data.setdefault("description", f"{claim.title}: {claim.statement}")
    data.setdefault("seed_data", True)
    if seed_offset:
        data["seed"] = int(data.get("seed", 0)) + seed_offset
        base = data.setdefault("base", {})
        for section in ("train", "task"):
            part = base.setdefault(section, {})
            part["seed"] = int(part.get("seed", 0)) + SEED_STRIDE * seed_offset
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
