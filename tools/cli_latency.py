"""Wall time of the commands that do not train (issue 15, item 4: each under 1 s).

Runs ``bench --help``, ``bench variants``, ``bench status SWEEP_DIR``, ``bench ls``
(the sweep's parent: one row; the sweep: a row per run) and ``bench report --help`` as fresh subprocesses, each ``--repeat`` times (default 5),
and prints the median and the slowest run against the 1 s target. The sweep
directory for ``bench status`` is a tiny sweep prepared (studies created, nothing
trained) in a temporary directory, unless ``--sweep DIR`` names an existing one
(e.g. a finished quickstart; only read). Usage:

    python tools/cli_latency.py [--repeat 5] [--sweep SWEEP_DIR]

Run it with the interpreter of the environment to measure (its ``bench`` console
script next to it is what gets timed).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TARGET_S = 1.0

# A one-cell-pair sweep small enough that preparing it builds nothing heavy.
TINY_SPEC = {
    "name": "latency",
    "base": {
        "task": {"name": "copy", "seq_len": 6, "n_symbols": 8, "n_train": 64, "n_val": 16},
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
        "train": {"max_steps": 5, "threads": 1},
        "tracking": {"mode": "disabled"},
    },
    "compare": {"model.norm_placement": ["pre", "post"]},
    "tune": {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 2},
    "seeds": 1,
    "pruner": "none",
}


def bench_command() -> list[str]:
    """The ``bench`` console script of this interpreter's environment (else ``-m bench``)."""
    script = Path(sys.executable).parent / "bench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bench"]


def prepare_status_sweep(root: Path) -> Path:
    """A real sweep directory (sweep.json, spec.yaml, journal storage with its studies)."""
    spec = root / "latency.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC, sort_keys=False))
    out = root / "sweep"
    code = (
        "import sys; from bench.sweeps.layout import prepare_sweep; "
        "prepare_sweep(sys.argv[1], out=sys.argv[2], command='cli_latency', check_data=False)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(spec), str(out)], check=True, capture_output=True
    )
    return out


def time_command(argv: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` fresh runs of ``argv`` (each must exit 0)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--sweep", type=Path, help="time `bench status` on this sweep directory")
    args = parser.parse_args(argv)
    bench = bench_command()
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as tmp:
        sweep = args.sweep or prepare_status_sweep(Path(tmp))
        commands = {
            "bench --help": ["--help"],
            "bench variants": ["variants"],
            "bench status SWEEP_DIR": ["status", str(sweep)],
            "bench ls SWEEP_DIR/..": ["ls", str(sweep.parent)],
            "bench ls SWEEP_DIR": ["ls", str(sweep)],
            "bench report --help": ["report", "--help"],
        }
        rows = [
            (name, time_command([*bench, *extra], args.repeat)) for name, extra in commands.items()
        ]
    print(f"{'command':<24} {'median s':>9} {'max s':>7} {'target s':>9}  ok")
    for name, times in rows:
        med = statistics.median(times)
        ok = "yes" if med < TARGET_S else "NO"
        print(f"{name:<24} {med:>9.3f} {max(times):>7.3f} {TARGET_S:>9.1f}  {ok}")
    print(f"({args.repeat} runs each, {' '.join(bench)}; status on {sweep})")
    return 0 if all(statistics.median(t) < TARGET_S for _, t in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
