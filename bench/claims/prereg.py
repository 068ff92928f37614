"""Pre-registration: what a claim's runs were launched with, and whether it still holds.

When ``bench reproduce`` launches (or resumes) a claim's sweep it records, in the
sweep directory, the claim's id, version, the sha256 of the claim file's bytes, the
git commit of the code, the budget, the seed offset and the time (``claim.json``;
``claim-<id>.json`` for a claim that judges another claim's sweep, ``sweep_of``).
At judgement the claim file is hashed again: a file that changed after its runs
launched is not judged on them (a rule must be fixed before the runs it judges).
A changed rule is a new ``version``, run on seed offsets no earlier version saw
(:func:`bench.claims.spec.check_offset`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.claims.spec import ClaimSpec

SHORT = 12  # hex digits of a hash or commit the report shows


def record_path(sweep_dir: Path, claim: ClaimSpec) -> Path:
    name = "claim.json" if claim.sweep_id == claim.id else f"claim-{claim.id}.json"
    return sweep_dir / name


def file_sha256(claim: ClaimSpec) -> str:
    """sha256 of the claim file's bytes now ("unknown" for a claim built in code)."""
    if claim.path is None or not claim.path.is_file():
        return "unknown"
    return hashlib.sha256(claim.path.read_bytes()).hexdigest()


def code_commit() -> str:
    """``git rev-parse HEAD`` of the code's checkout, or "unknown"."""
    try:
        p = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    out = p.stdout.strip()
    return out if p.returncode == 0 and out else "unknown"


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_launch(claim: ClaimSpec, sweep_dir: Path, budget: str, seed_offset: int) -> str | None:
    """Write the launch record (or add this resumption to it); a warning when the
    recorded file differs from the current one (the record of the launch is kept)."""
    path = record_path(sweep_dir, claim)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sha = claim.loaded_sha256 or file_sha256(claim)  # the bytes the runs were set up from
    old = read_record(path)
    if old is None:
        rec = {"claim": claim.id, "version": claim.version, "sha256": sha,
               "commit": code_commit(), "budget": budget, "seed_offset": seed_offset,
               "launched": now, "resumed": []}  # fmt: skip
        path.write_text(json.dumps(rec, indent=1))
        return None
    if old.get("sha256") != sha:
        return (
            f"claim {claim.id}: the claim file changed since its runs launched "
            f"(sha {str(old.get('sha256'))[:SHORT]} then, {sha[:SHORT]} now); "
            "these runs will not judge it"
        )
    old["resumed"] = [*old.get("resumed", []), now]
    path.write_text(json.dumps(old, indent=1))
    return None


@dataclass(frozen=True)
class Registration:
    """What the report shows of a claim's pre-registration, and why it cannot be judged."""

    sha256: str  # the current file's
    commit: str  # the code's at launch ("unknown" when not recorded)
    launched: str
    problem: str | None  # the inconclusive reason when the runs do not judge this file


def check_registration(claim: ClaimSpec, sweep_dir: Path) -> Registration:
    """Compare the current claim file with the one its runs were launched with."""
    sha = file_sha256(claim)
    rec = read_record(record_path(sweep_dir, claim))
    if rec is None:
        return Registration(sha, "unknown", "", None)
    then = str(rec.get("sha256", "unknown"))
    commit, launched = str(rec.get("commit", "unknown")), str(rec.get("launched", ""))
    if then == sha:
        return Registration(sha, commit, launched, None)
    a, b = then[:SHORT], sha[:SHORT]
    was = rec.get("version")
    if was == claim.version:
        why = (
            f"the claim file changed after its runs (sha {a} at launch, {b} now); "
            "give it a new version and run fresh offsets"
        )
    else:
        why = (
            f"the runs were launched for version {was} (sha {a}); version {claim.version} "
            f"(sha {b}) is judged only on runs launched with it, at fresh offsets"
        )
    return Registration(sha, commit, launched, why)
