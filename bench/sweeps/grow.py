"""Growing a sweep: which spec changes keep every finished trial valid, and the diff a user sees.

A sweep directory holds the spec it ran (``spec.yaml``). Rerunning it with a
different spec is either

- **additive**: more ``seeds``, more tuning ``trials`` (with the same
  deterministic tuning points), a larger or removed ``budget.trials`` or
  ``budget.wall_clock``, more values of an existing ``compare`` axis, or a new
  ``description``. Every finished trial stays what it was; ``bench sweep
  --extend`` adds the new seed runs, trials and cells to the same studies.
  When more tuning trials find a better configuration for a cell, that cell's
  seed runs are redone with it (the earlier ones are superseded, see
  :func:`bench.sweeps.study.seed_sources`);
- **anything else** (steps, base config, tuned ranges, objective, ...): the
  finished trials would answer another question, so the sweep refuses and
  says to use a new ``--out``.

Either way the user sees the difference first, one line per changed key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.config import flatten
from bench.sweeps import tuning
from bench.sweeps.spec import SweepSpec

_MISSING = object()
NOT_ADDITIVE = (  # key prefix -> why the finished trials no longer fit
    ("base.", "every run would train something else"),
    ("budget.max_steps", "every run would train for another number of steps"),
    ("objective", "the trials were judged by another objective"),
    ("tune.params", "another search space"),
    ("search.params", "another search space"),
    ("pruner", "trials were pruned (or not) by another rule"),
)


@dataclass(frozen=True)
class Change:
    """One changed key of the spec, and whether the finished trials stay valid under it."""

    key: str
    old: Any
    new: Any
    additive: bool
    why: str

    def line(self) -> str:
        verdict = "additive" if self.additive else "not additive"
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}  ({verdict}: {self.why})"


def _show(v: Any) -> str:
    if v is _MISSING or v is None:
        return "(unset)"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def _flat(spec: SweepSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", exclude_none=True)
    compare = data.pop("compare", None) or {}
    flat = flatten(data)
    flat.update({f"compare.{k}": v for k, v in compare.items()})  # axis keys hold dots
    return flat


def _more(old: Any, new: Any) -> bool:
    """``new`` is larger, or the limit was removed."""
    if new is _MISSING:
        return True
    return old is not _MISSING and isinstance(new, int | float) and new > old


def _judge(key: str, old: Any, new: Any, a: SweepSpec, b: SweepSpec) -> tuple[bool, str]:
    if key == "description":
        return True, "text only"
    if key == "seeds":
        if _more(old, new):
            return True, f"{new - old} more seed run(s) of each cell's best configuration"
        return False, "fewer seeds would drop finished seed runs"
    if key in ("tune.trials", "search.trials"):
        if not _more(old, new):
            return False, "fewer tuning trials would drop finished trials"
        pa, pb = tuning.describe(a).get("values"), tuning.describe(b).get("values")
        if pa != pb:
            return False, "the deterministic tuning points change with it; set tune.points"
        return True, f"{new - old} more tuning trial(s) per cell"
    if key in ("budget.trials", "budget.wall_clock"):
        if _more(old, new):
            return True, "a larger budget"
        return False, "a smaller budget"
    if key.startswith("compare."):
        if old is _MISSING or new is _MISSING:
            return False, "a new or removed axis changes every cell"
        if all(v in new for v in old):
            added = [v for v in new if v not in old]
            cells = math.prod(len(v) for k, v in _flat(b).items() if k.startswith("compare."))
            return True, f"new value(s) {_show(added)}: {cells} cells in all"
        return False, "a removed value drops finished cells"
    for prefix, why in NOT_ADDITIVE:
        if key.startswith(prefix):
            return False, why
    return False, "the finished trials would answer another question"


def spec_changes(old: SweepSpec, new: SweepSpec) -> list[Change]:
    """Every key whose value differs between two specs, judged additive or not."""
    a, b = _flat(old), _flat(new)
    out = []
    for key in list(dict.fromkeys([*a, *b])):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va == vb:
            continue
        additive, why = _judge(key, va, vb, old, new)
        out.append(Change(key, va, vb, additive, why))
    if old.compare and new.compare and list(old.compare) != list(new.compare):
        out.append(
            Change(
                "compare (order)",
                list(old.compare),
                list(new.compare),
                False,
                "another axis order names every cell differently",
            )
        )
    return out


def is_additive(changes: list[Change]) -> bool:
    return bool(changes) and all(c.additive for c in changes)


def check_growth(
    old: SweepSpec, new: SweepSpec, where: str, name: str, extend: bool
) -> list[Change]:
    """Print how ``new`` differs from the sweep's spec; raise unless it may grow the sweep.

    Returns the changes (empty when the specs mean the same). The difference goes
    to stdout, one line per key; the refusal is one ConfigError line naming the way on.
    """
    from bench.config import ConfigError

    changes = spec_changes(old, new)
    if not changes:
        return []
    print(f"the spec differs from the one sweep '{name}' ran ({where}/spec.yaml):")
    for c in changes:
        print(f"  {c.line()}")
    if is_additive(changes):
        if extend:
            return changes
        raise ConfigError(
            f"out={where}: the spec adds to sweep '{name}'; rerun with --extend to grow it "
            "(every finished trial is kept), or give a new --out for a separate sweep"
        )
    first = next(c for c in changes if not c.additive)
    raise ConfigError(
        f"out={where}: holds sweep '{name}' with a different spec ({first.key} is not an "
        "additive change); give a new --out for this spec, or rerun the old spec to resume"
    )
