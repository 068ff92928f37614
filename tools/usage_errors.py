"""How every ``bench`` sub-command answers a usage error: one line, exit code 2, under 1 s.

For each sub-command, representative bad invocations (a bad flag, a bad config key,
a missing path, a directory of the wrong kind, a bad value, a missing optional package) run as fresh subprocesses
in a scratch directory holding a few small files (:func:`make_files`). Per
invocation it prints the median wall and CPU time of ``--repeat`` runs, the exit code, the
number of stderr lines and whether a traceback appeared, against the target: exit
code 2, one line, no traceback, under 1 s. An optional package is made absent by
``sys.modules[name] = None`` before ``bench`` starts, whether or not it is installed.
Usage:

    python tools/usage_errors.py [--repeat 3] [--markdown]

``tests/test_bad_inputs.py`` runs the same invocations (:data:`INVOCATIONS`, not timed)
and checks the exit code, the one line and the absent traceback;
``tests/test_cli_imports.py`` checks that none of them imports torch, Lightning or any
other heavy package.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

TARGET_S = 1.0

# A valid tiny sweep spec; the bad one adds a key the spec does not have. The cases of
# tests/test_bad_inputs.py break one thing in it too.
SPEC = {
    "name": "tiny",
    "base": {
        "task": {"name": "copy", "seq_len": 4, "n_train": 64, "n_val": 16, "batch_size": 8},
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2},
        "train": {"max_steps": 2},
        "tracking": {"mode": "disabled"},
    },
    "compare": {"model.norm_placement": ["pre", "post"]},
    "pruner": "none",
}


@dataclass(frozen=True)
class Invocation:
    """``bench ARGS`` (run in the scratch directory), what kind of mistake it is, and the
    optional packages made absent for it."""

    kind: str
    args: tuple[str, ...]
    absent: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return self.args[0]

    @property
    def line(self) -> str:
        absent = f"  (no {', '.join(self.absent)})" if self.absent else ""
        return f"bench {' '.join(self.args)}{absent}"


def _i(kind: str, args: str, *absent: str) -> Invocation:
    return Invocation(kind, tuple(args.split()), absent)


INVOCATIONS = [
    _i("bad flag", "variants --all"),
    _i("bad config key", "train model.n_headz=8"),
    _i("bad value", "train model.norm_placement=banana"),
    _i("missing path", "train --resume nowhere"),
    _i("bad flag", "train --bogus-flag"),
    _i("missing package", "train task.name=text task.hf_dataset=wikitext", "datasets"),
    _i("bad value", "throughput --rounds 4"),
    _i("bad config key", "throughput --vary model.n_headz=2,4"),
    _i("missing path", "sweep nosuch.yaml"),
    _i("bad config key", "sweep bad-key.yaml"),
    _i("bad value", "sweep spec.yaml --workers 0"),
    _i("missing path", "worker nosuch.yaml"),
    _i("wrong directory", "worker ."),
    _i("bad value", "worker spec.yaml --threads 0"),
    _i("missing path", "status nowhere"),
    _i("missing path", "dashboard nowhere"),
    _i("bad value", "dashboard spec.yaml --port http"),
    _i("bad value", "ls --sort colour"),
    _i("missing path", "ls nowhere"),
    _i("missing path", "compare nowhere elsewhere"),
    _i("bad value", "export nowhere --format xlsx"),
    _i("missing path", "export nowhere"),
    _i("missing package", "export nowhere --format parquet", "pyarrow"),
    _i("missing path", "report nowhere"),
    _i("bad flag", "report nowhere --colour"),
    _i("wrong directory", "report ."),
    _i("bad value", "reproduce --budget huge"),
    _i("bad value", "reproduce no-such-claim"),
    _i("missing path", "landscape nowhere"),
    _i("wrong directory", "landscape ."),
    _i("missing path", "attention nowhere"),
    _i("missing path", "figures nowhere"),
    _i("bad value", "completion fish"),
    _i("bad command", "trian"),
]


def make_files(root: Path) -> None:
    """The files the invocations name: a valid spec and one with an unknown key."""
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    (root / "bad-key.yaml").write_text(yaml.safe_dump({**SPEC, "seedz": 3}, sort_keys=False))


def argv_of(inv: Invocation) -> list[str]:
    """The subprocess: ``python -m bench ARGS``, after making the absent packages absent."""
    if not inv.absent:
        return [sys.executable, "-m", "bench", *inv.args]
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in inv.absent)
    code = f"import sys; {block}; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *inv.args]


@dataclass(frozen=True)
class Result:
    inv: Invocation
    seconds: float  # median wall time
    cpu: float  # median CPU time (user + system): what load on the machine does not inflate
    code: int
    lines: int  # stderr lines
    traceback: bool
    first: str  # stderr's first line

    @property
    def ok(self) -> bool:
        return self.code == 2 and self.lines == 1 and not self.traceback


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(inv: Invocation, root: Path, repeat: int) -> Result:
    """Run ``inv`` ``repeat`` times in ``root``; the median times and the last run's output."""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), children_cpu()
        proc = subprocess.run(argv_of(inv), cwd=root, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - start)
        cpu.append(children_cpu() - start_cpu)
    lines = proc.stderr.strip().splitlines()
    return Result(
        inv,
        statistics.median(times),
        statistics.median(cpu),
        proc.returncode,
        len(lines),
        "Traceback" in proc.stderr,
        lines[0] if lines else "",
    )


def floor(repeat: int) -> tuple[float, float]:
    """Median wall seconds of ``python -c pass`` and of ``bench --version`` (the parser
    built, nothing checked): what any invocation costs on this machine at this load."""
    out = []
    for argv in ([sys.executable, "-c", "pass"], [sys.executable, "-m", "bench", "--version"]):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times))
    return out[0], out[1]


def cpu_model() -> str:
    """``lscpu``'s model name (empty when lscpu is absent)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
        "",
    )


def print_plain(results: list[Result]) -> None:
    print(f"{'invocation':<66} {'wall s':>6} {'cpu s':>6} {'exit':>4} {'lines':>5} {'tb':>3}  ok")
    for r in results:
        tb = "yes" if r.traceback else "no"
        ok = "yes" if r.ok and r.seconds < TARGET_S else "NO"
        print(
            f"{r.inv.line:<66} {r.seconds:>6.3f} {r.cpu:>6.3f} {r.code:>4} {r.lines:>5} {tb:>3}"
            f"  {ok}"
        )
        if not r.ok:
            print(f"    {r.first}")


def print_markdown(results: list[Result]) -> None:
    print("| command | invocation | mistake | wall s | CPU s | exit | stderr lines | traceback |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        tb = "yes" if r.traceback else "no"
        line = r.inv.line.replace("|", "\\|")
        print(
            f"| {r.inv.command} | `{line}` | {r.inv.kind} | {r.seconds:.2f} | {r.cpu:.2f} | {r.code} "
            f"| {r.lines} | {tb} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per invocation (default 3)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usage-errors-") as tmp:
        make_files(Path(tmp))
        results = [measure(inv, Path(tmp), args.repeat) for inv in INVOCATIONS]
    python, version = floor(args.repeat)
    (print_markdown if args.markdown else print_plain)(results)
    when = datetime.date.today().isoformat()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n({args.repeat} runs each, median; for scale: python -c pass {python:.2f} s, "
        f"bench --version {version:.2f} s; {cpu_model() or 'unknown CPU'}, "
        f"{os.cpu_count()} cores, load average {load}; {when})"
    )
    bad = [r for r in results if not r.ok or r.seconds >= TARGET_S]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
