"""Rerun the quickstart with different sampler and seed offsets and print each report's findings.

Issue 9's check that the quickstart's verdict survives: the significant findings of
the reruns must agree, and nothing called significant in one may be reversed in
another. Usage (about 5 minutes per rerun on 2 CPU cores):

    python tools/quickstart_reruns.py [--offsets 0 1 2] [--workers 2] [--root runs/reruns]

Rerun k uses the spec's sampler seed + k and training seeds offset by 1000 k
(tuning trials run with seed 1000 k, the seed phase with 1000 k + 1, 2, 3).
Reports go to ROOT/report-k/.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"


def rerun(offset: int, workers: int, root: Path) -> Path:
    spec = yaml.safe_load(SPEC.read_text())
    spec["name"] = f"quickstart-r{offset}"
    spec["seed"] = spec.get("seed", 0) + offset
    spec["base"].setdefault("train", {})["seed"] = 1000 * offset
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"quickstart-r{offset}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep, report = root / f"sweep-{offset}", root / f"report-{offset}"
    bench = [sys.executable, "-m", "bench"]
    subprocess.run(
        [*bench, "sweep", str(path), "--workers", str(workers), "--out", str(sweep)], check=True
    )
    subprocess.run([*bench, "report", str(sweep), "--out", str(report)], check=True)
    return report / "report.md"


def findings(md: Path) -> list[str]:
    text = md.read_text()
    section = text[text.index("## Findings") : text.index("\nQuality metric")]
    return [line for line in section.splitlines() if line.startswith("- ")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--offsets", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--root", type=Path, default=Path("runs/reruns"))
    args = p.parse_args()
    for k in args.offsets:
        md = rerun(k, args.workers, args.root)
        print(f"\n## rerun offset {k} ({md})")
        for line in findings(md):
            print(re.sub(r"\s+", " ", line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
