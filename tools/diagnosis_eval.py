"""Each diagnosis rule's precision and recall on the labelled corpus (issue 29, Build 2).

Reads every ``labels.json`` under ROOT (written by ``tools/diagnosis_corpus.py``) and the
records of its runs, and prints, for one half of the corpus (by seed), a table: rule,
planted runs (its cause planted and the run did not learn or diverged), fired (runs it
gives a *diagnosis* on: the rule finds its evidence and the run shows a symptom,
:mod:`bench.diagnoses.symptoms`; its current demotion is ignored), precision, recall,
false alarms on healthy runs (diagnoses on runs with nothing planted that learned; none
is possible unless a healthy run spiked or sat at chance) and watches on them (the
evidence found on healthy runs that learned, shown as watches). A rule below
``MIN_PRECISION`` 0.9 or ``MIN_RECALL`` 0.8 on the held-out half is demoted to a watch
(:mod:`bench.diagnoses.measured`). Thresholds may be tuned on ``--half tune`` only; the
halves are fixed by seed (``HALVES`` in ``tools/diagnosis_corpus.py``). A corpus with a
row made by an earlier version of its configuration (its digest differs) is refused:
regenerate it first.

    python tools/diagnosis_eval.py runs/diagnosis-corpus [--half held_out|tune|all]
        [--measured]   # also print the MEASURED entries for bench/diagnoses/measured.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.diagnoses import RULES, RunRecords
from bench.diagnoses.measured import Measured
from bench.diagnoses.symptoms import symptom

LEARNED = "learned"


@dataclass
class Labelled:
    """One corpus run: its label row and what the rules read from its records."""

    row: dict[str, Any]
    fired: set[str] = field(default_factory=set)  # evidence found (the gate aside)
    symptom: str | None = None

    @property
    def failed(self) -> bool:
        return self.row["outcome"] != LEARNED

    @property
    def healthy(self) -> bool:
        return self.row["plant"] == "healthy" and not self.failed

    def positive(self, rule: str) -> bool:
        return rule in self.row["causes"] and self.failed

    def diagnosed(self, rule: str) -> bool:
        return rule in self.fired and self.symptom is not None


def stale(root: Path) -> list[str]:
    """Runs whose configuration has changed since they were made (their digest differs),
    or whose labels are not the causes their configuration names now."""
    corpus = _corpus_tool()
    out = []
    for labels_path in sorted(root.rglob("labels.json")):
        for row in json.loads(labels_path.read_text())["runs"]:
            name = row["config"]
            if (
                name not in corpus.CONFIGS
                or row.get("config_digest") != corpus.digest(name)
                or corpus.label(row) != row
            ):
                out.append(row["run"])
    return out


def _corpus_tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "diagnosis_corpus", Path(__file__).with_name("diagnosis_corpus.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(root: Path) -> list[Labelled]:
    """Every labelled run under ``root`` with the rules' findings on its records."""
    out = []
    for labels_path in sorted(root.rglob("labels.json")):
        for row in json.loads(labels_path.read_text())["runs"]:
            rec = RunRecords.from_run_dir(labels_path.parent / row["run_dir"])
            fired = {name for name, rule in RULES.items() if rule.evidence(rec) is not None}
            out.append(Labelled(row, fired, symptom(rec)))
    return out


def measure(runs: list[Labelled]) -> dict[str, Measured]:
    out = {}
    for name in RULES:
        planted = [r for r in runs if r.positive(name)]
        fired = [r for r in runs if r.diagnosed(name)]
        out[name] = Measured(
            planted=len(planted),
            fired=len(fired),
            hits=sum(r.positive(name) for r in fired),
            healthy_alarms=sum(r.healthy for r in fired),
        )
    return out


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(runs: list[Labelled], figures: dict[str, Measured]) -> str:
    healthy = [r for r in runs if r.healthy]
    lines = [
        "| rule | planted | fired | precision | recall | false alarms on healthy | "
        "watches on healthy | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in figures.items():
        watches = sum(name in r.fired for r in healthy)
        verdict = "diagnosis" if m.passes() else "demoted to a watch"
        lines.append(
            f"| {name} | {m.planted} | {m.fired} | {_ratio(m.precision)} | "
            f"{_ratio(m.recall)} | {m.healthy_alarms} of {len(healthy)} | "
            f"{watches} of {len(healthy)} | {verdict} |"
        )
    return "\n".join(lines)


def corpus_lines(runs: list[Labelled]) -> list[str]:
    """Per configuration: its runs' outcomes and the rules whose evidence was found."""
    by: dict[str, list[Labelled]] = {}
    for r in runs:
        by.setdefault(r.row["config"], []).append(r)
    out = ["| configuration | planted causes | outcomes | found (evidence, any kind) |",
           "|---|---|---|---|"]  # fmt: skip
    for name, rs in by.items():
        outcomes = ", ".join(f"s{r.row['seed']} {r.row['outcome']}" for r in rs)
        counts: dict[str, int] = {}
        for r in rs:
            for f in r.fired:
                counts[f] = counts.get(f, 0) + 1
        found = ", ".join(f"{k} {v}/{len(rs)}" for k, v in sorted(counts.items())) or "–"
        causes = ", ".join(rs[0].row["causes"]) or "healthy"
        out.append(f"| {name} | {causes} | {outcomes} | {found} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the corpus (tools/diagnosis_corpus.py --root)")
    ap.add_argument("--half", choices=("held_out", "tune", "all"), default="held_out")
    ap.add_argument("--measured", action="store_true", help="print MEASURED for measured.py")
    args = ap.parse_args(argv)
    if not any(args.root.rglob("labels.json")):
        print(f"{args.root}: no labels.json (run tools/diagnosis_corpus.py first)", file=sys.stderr)
        return 2
    old = stale(args.root)
    if old:
        print(
            f"{args.root}: {len(old)} runs made or labelled by an earlier version of their "
            f"configuration ({', '.join(old[:3])}{', ...' if len(old) > 3 else ''}); "
            "run tools/diagnosis_corpus.py on it again",
            file=sys.stderr,
        )
        return 2
    everything = load(args.root)
    runs = [r for r in everything if args.half == "all" or r.row["half"] == args.half]
    seeds = sorted({r.row["seed"] for r in runs})
    cpu = sum(r.row.get("cpu_seconds", 0) for r in everything)
    print(
        f"corpus {args.root}: {len(everything)} runs ({cpu:.0f} s CPU to generate); "
        f"half {args.half}: {len(runs)} runs, seeds {seeds}, "
        f"{sum(r.healthy for r in runs)} healthy runs that learned, "
        f"{sum(r.failed for r in runs)} that did not learn or diverged\n"
    )
    figures = measure(runs)
    print(table(runs, figures))
    print()
    print("\n".join(corpus_lines(runs)))
    if args.measured:
        print()
        for name, m in figures.items():
            print(
                f'    "{name}": Measured(planted={m.planted}, fired={m.fired}, '
                f"hits={m.hits}, healthy_alarms={m.healthy_alarms}),"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
