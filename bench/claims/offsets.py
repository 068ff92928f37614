"""The same claims judged at other seed offsets.

Each claims report leaves its verdicts in ``verdicts.json``; a report then reads
the ``verdicts.json`` of the other reports beside it (same budget, other seed
offsets) and says, claim by claim, whether the offsets agree. Only verdicts of
the same claim file (its sha256) are compared: a changed file is a new version,
judged on fresh offsets, and never set against the old one's verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.io import write_json

VERDICTS = "verdicts.json"


def verdict_records(results: list[Any]) -> dict[str, dict[str, Any]]:
    """Claim id -> version, file sha256, verdict and reason (``ClaimResult`` list in)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        reg = r.registration
        out[r.claim.id] = {
            "version": r.claim.version,
            "sha256": reg.sha256 if reg else "",
            "status": r.verdict.status if r.verdict else "inconclusive",
            "reason": r.verdict.reason if r.verdict else f"no runs: {r.error}",
        }
    return out


def write_verdicts(
    records: dict[str, dict[str, Any]], budget: str, offset: int, path: Path
) -> None:
    """``verdicts.json`` of one report (written with the report, atomically)."""
    write_json(path, {"budget": budget, "seed_offset": offset, "claims": records})


def sibling_verdicts(target: Path, budget: str, offset: int) -> dict[int, dict[str, Any]]:
    """Seed offset -> claim records of the other reports beside ``target`` at ``budget``.

    A report directory without a readable ``verdicts.json`` is not a sibling; of two
    reports at one offset the first by name counts.
    """
    out: dict[int, dict[str, Any]] = {}
    parent = target.parent
    if not parent.is_dir():
        return out
    for d in sorted(p for p in parent.iterdir() if p.is_dir() and p.name != target.name):
        try:
            data = json.loads((d / VERDICTS).read_text())
            other = int(data["seed_offset"])
            claims = dict(data["claims"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if data.get("budget") == budget and other != offset and other not in out:
            out[other] = claims
    return out


@dataclass
class Agreement:
    """Verdicts of each claim at each offset and whether they agree."""

    offsets: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    sentence: str = ""


def agreement(
    here: dict[str, dict[str, Any]], offset: int, others: dict[int, dict[str, Any]]
) -> Agreement | None:
    """Where this report's verdicts and the other offsets' agree (None: nothing to compare).

    A claim is compared with another offset only when both judged the same file
    (sha256); otherwise that offset's cell reads "other version" and does not count.
    """
    offsets = sorted({offset, *others})
    rows: list[dict[str, Any]] = []
    for cid, rec in here.items():
        verdicts: dict[int, str] = {offset: rec["status"]}
        for o, claims in others.items():
            theirs = claims.get(cid)
            if theirs is None:
                verdicts[o] = "not judged"
            elif rec.get("sha256") and theirs.get("sha256") == rec["sha256"]:
                verdicts[o] = str(theirs.get("status", "inconclusive"))
            else:
                verdicts[o] = "other version"
        compared = [v for v in verdicts.values() if v not in ("not judged", "other version")]
        agree = None if len(compared) < 2 else len(set(compared)) == 1
        rows.append({"id": cid, "verdicts": [verdicts[o] for o in offsets], "agree": _word(agree)})
    judged = [r for r in rows if r["agree"] != "–"]
    if not judged:
        return None
    differ = [r for r in judged if r["agree"] == "no"]
    sentence = (
        f"Judged at seed offsets {', '.join(map(str, offsets))} with the same claim files, "
        f"the verdicts agree on {len(judged) - len(differ)} of {len(judged)} claims"
    )
    if differ:
        sentence += "; they differ on " + "; ".join(
            f"{r['id']} ({', '.join(f'{o}: {v}' for o, v in zip(offsets, r['verdicts'], strict=True))})"
            for r in differ
        )
    return Agreement(offsets, rows, sentence + ".")


def _word(agree: bool | None) -> str:
    return "–" if agree is None else "yes" if agree else "no"
