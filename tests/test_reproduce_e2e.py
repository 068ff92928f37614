"""``bench reproduce --budget quick`` end to end: real sweeps, real report, opened in Chromium.

One shipped claim runs here (entropy-collapse, with its own sweep; a claim judging
another claim's runs is specified in ``test_claims_spec.py``): a claim sweep costs
about half a minute on 2 cores, every claim's spec is validated for both budgets in
``test_claims_spec.py``, the verdict rules in ``test_claims_rules.py``, and real tiny
runs reaching a verdict in ``test_claims_prereg.py``. The quick budget exercises the
pipeline; its verdicts may be (and mostly are) inconclusive.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from browser import ensure_chromium, inspect_page
from wandb_runs import find_run_files, read_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLAIMS = ["entropy-collapse"]
VERDICTS = (
    "consistent with the paper at this scale",
    "not reproduced at this scale",
    "inconclusive",
)
TITLE = "Published claims tested at small scale"


def _reproduce(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bench", "reproduce", *CLAIMS, "--budget", "quick",
           "--workers", "2", "--runs", str(root / "runs"), "--out", str(root / "report"), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=900)


def _trials(sweep_dir: Path) -> int:
    """Every trial of every study of the sweep, counted through Optuna."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "journal.log"))
    )
    return sum(s.n_trials for s in optuna.get_all_study_summaries(storage))


def test_bench_reproduce_quick_end_to_end(tmp_path):
    # One test, so that pytest-xdist runs these sweeps once (not once per worker).
    p = _reproduce(tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    _each_claim_gets_a_section_with_statement_verdict_and_reason(tmp_path)
    _each_claim_shows_its_caveat_hash_and_pre_registration(tmp_path)
    _runs_are_grouped_per_claim_in_wandb(tmp_path)
    _the_report_opens_in_chromium_with_every_figure_and_nothing_fetched(tmp_path)
    _a_second_invocation_resumes_without_running_anything_again(tmp_path)


def _each_claim_gets_a_section_with_statement_verdict_and_reason(root: Path) -> None:
    md = (root / "report" / "report.md").read_text()
    assert md.startswith(f"# {TITLE}\n\n*1 published claim about")
    for claim in CLAIMS:
        section = md[md.index(f'<a id="{claim}"></a>') :]
        heading = section.splitlines()[1]
        assert heading.endswith(VERDICTS), heading
        assert "**Verdict: " in section and "What was run" in section
        assert "| sanity check (holds by construction) |" in section
        assert "train.lr is a compared axis" in section


def _each_claim_shows_its_caveat_hash_and_pre_registration(root: Path) -> None:
    runs = root / "runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == CLAIMS
    md = (root / "report" / "report.md").read_text()
    assert "*Scale caveat.* A 2-layer" in md
    assert re.search(r"claim file sha256 `[0-9a-f]{12}`", md)
    record = (runs / "entropy-collapse" / "claim.json").read_text()
    assert '"claim": "entropy-collapse"' in record and '"budget": "quick"' in record


def _the_report_opens_in_chromium_with_every_figure_and_nothing_fetched(root: Path) -> None:
    ensure_chromium()
    report = root / "report"
    drawn = sorted((report / "figures").glob("*.png"))
    page = inspect_page(report / "index.html", root / "shot.png")
    assert page.console_errors == [] and page.script_elements == 0
    assert len(page.images) == len(drawn) >= 3
    for img in page.images:
        assert img["complete"] and img["width"] > 300 and img["height"] > 100, img
    assert all(u.startswith(("file://", "data:image/png")) for u in page.requests), page.requests
    assert TITLE in page.text
    assert page.scroll_width <= 1280


def _runs_are_grouped_per_claim_in_wandb(root: Path) -> None:
    files = find_run_files(root / "runs" / "entropy-collapse" / "wandb")
    assert files, "no W&B offline runs"
    assert {read_run(f).group for f in files} == {"claim-entropy-collapse"}


def _a_second_invocation_resumes_without_running_anything_again(root: Path) -> None:
    sweeps = [root / "runs" / "entropy-collapse"]
    before = [_trials(d) for d in sweeps]
    verdicts = _verdicts((root / "report" / "report.md").read_text())
    p = _reproduce(root)
    assert p.returncode == 0, p.stderr[-2000:]
    assert [_trials(d) for d in sweeps] == before
    assert _verdicts((root / "report" / "report.md").read_text()) == verdicts


def _verdicts(md: str) -> list[str]:
    return re.findall(r"^## .*: (" + "|".join(VERDICTS) + ")$", md, re.M)
