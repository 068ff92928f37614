"""``bench reproduce``: run the claims' sweeps, judge each claim, write one report.

Order of work, so that a mistake costs nothing:

1. every named claim is loaded and its sweep validated (spec, every cell's config,
   every selector of its rule against the sweep's axes) before anything runs;
   A ``--budget full`` run at a seed offset an earlier version of a claim saw is
   refused (:func:`bench.claims.spec.check_offset`);
2. each claim that owns a sweep runs it as an ordinary sweep in
   ``RUNS/<budget>/<id>/`` (``bench sweep`` with its spec written beside it), so an
   interrupted ``bench reproduce`` resumes where it stopped and a finished claim is
   not run again. Each launch or resumption records the claim file's hash
   (:mod:`bench.claims.prereg`);
3. every claim is judged from its sweep's records (:mod:`bench.claims.rules`), unless
   its file changed after its runs launched, and the report is written to ``OUT``
   (``index.html``, ``report.md``, ``figures/``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.claims import spec as cspec
from bench.claims.judge import TIMING, read_timing
from bench.claims.report import write_report
from bench.claims.spec import select_claims as select_claims  # it was defined here
from bench.config import ConfigError

if TYPE_CHECKING:
    pass


def check_claims(
    claims: list[cspec.ClaimSpec], budget: str, offset: int, build_data: bool = False
) -> dict[str, Any]:
    """Each owning claim's sweep spec as data, validated (ConfigError in one line).

    ``build_data``: also build every cell's data as its runs will (what ``bench
    sweep`` checks before it starts), so no claim runs before every claim is sound.
    """
    from bench.sweeps.preflight import check_cells
    from bench.sweeps.spec import parse_spec, validate_spec_configs

    sweeps: dict[str, Any] = {}
    by_id = {c.id: c for c in claims}
    for c in claims:
        if c.sweep is None:
            continue
        where = f"claim {c.id}"
        data = cspec.sweep_data(c, budget, offset)
        if not data.get("compare"):
            raise ConfigError(f"{where}: sweep: needs 'compare' (a claim compares cells)")
        spec = parse_spec(data, where)
        validate_spec_configs(spec, where)
        if build_data:
            check_cells(spec, where)
        sweeps[c.id] = data
    for c in claims:
        cspec.check_selectors(c, sweeps[c.sweep_id], f"claim {c.id}")
        if c.sweep_of and by_id[c.sweep_of].sweep is None:
            raise ConfigError(f"claim {c.id}: sweep_of {c.sweep_of}: that claim has no sweep")
    return sweeps


def run_claim_sweeps(
    sweeps: dict[str, Any],
    claims: list[cspec.ClaimSpec],
    root: Path,
    workers: int | None,
    storage: str | None,
    budget: str,
    seed_offset: int,
) -> int:
    """Run (or resume) each claim's sweep in turn; the first non-zero exit code stops.

    Before the sweep runs, its directory is created and every claim judged on it
    records its launch (:func:`bench.claims.prereg.record_launch`).
    """
    from bench.claims.prereg import record_launch
    from bench.sweeps.launcher import run_sweep
    from bench.sweeps.layout import is_sweep_dir, prepare_sweep

    root.mkdir(parents=True, exist_ok=True)
    for claim_id, data in sweeps.items():
        path = root / f"{claim_id}.yaml"
        text = yaml.safe_dump(data, sort_keys=False)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        sweep_dir = root / claim_id
        command = f"bench reproduce {claim_id}"
        print(f"bench reproduce: claim {claim_id}: sweep {sweep_dir}", flush=True)
        if not is_sweep_dir(sweep_dir):
            prepare_sweep(path, storage, sweep_dir, command=command, check_data=False)
        for c in claims:
            if c.sweep_id == claim_id:
                warning = record_launch(c, sweep_dir, budget, seed_offset)
                if warning:
                    print(f"bench reproduce: {warning}", file=sys.stderr, flush=True)
        start = time.monotonic()
        code = run_sweep(path, workers, "cpu" if workers else None, storage, sweep_dir,
                         command=command)  # fmt: skip
        timing = read_timing(root)  # read late: another invocation may have written
        timing[claim_id] = timing.get(claim_id, 0.0) + time.monotonic() - start
        (root / TIMING).write_text(json.dumps(timing, indent=1))
        if code != 0:
            print(f"bench reproduce: claim {claim_id}: sweep ended with {code}", file=sys.stderr)
            return code
    return 0


def reproduce(
    names: list[str],
    budget: str = "quick",
    workers: int | None = None,
    storage: str | None = None,
    runs: str | Path | None = None,
    out: str | Path | None = None,
    seed_offset: int = 0,
    judge_only: bool = False,
) -> int:
    """The command; returns its exit code (0 when every sweep ran, whatever the verdicts).

    Defaults: sweeps in ``runs/claims/<budget>[-offsetK]``, the report in
    ``reports/claims[-offsetK]`` (a rerun with other seeds does not overwrite the first).
    """
    from bench.sweeps.storage import quiet_optuna

    claims = cspec.check_request(names, budget, seed_offset, workers)
    sweeps = check_claims(claims, budget, seed_offset, build_data=not judge_only)
    suffix = f"-offset{seed_offset}" if seed_offset else ""
    root = Path(runs) if runs else Path("runs") / "claims" / f"{budget}{suffix}"
    target = Path(out) if out else Path("reports") / f"claims{suffix}"
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target}: exists and is not a directory")
    quiet_optuna()
    code = 0
    if not judge_only:
        code = run_claim_sweeps(sweeps, claims, root, workers, storage, budget, seed_offset)
    path = write_report(claims, root, target, budget, seed_offset, storage)
    print(f"bench reproduce: report {path}")
    return code
