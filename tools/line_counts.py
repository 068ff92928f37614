"""Lines and files per package of ``bench/`` at two revisions, and what is over the style limits.

The architecture issue's measure: every module under ~400 lines, no function over
~60 lines. Counts come from the committed trees (``git ls-tree`` / ``git show``),
so the working copy does not matter. Usage::

    python tools/line_counts.py BASE_REV [REV]     # REV defaults to HEAD
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import defaultdict

MODULE_LIMIT = 400
FUNCTION_LIMIT = 60


def sources(rev: str) -> dict[str, str]:
    """Every ``bench/**/*.py`` at ``rev``: path -> text."""
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "bench"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        n: subprocess.run(
            ["git", "show", f"{rev}:{n}"], check=True, capture_output=True, text=True
        ).stdout
        for n in names
        if n.endswith(".py")
    }


def package(path: str) -> str:
    """``bench/x/...`` -> ``x/``; a module at the package root -> ``(root)``."""
    parts = path.split("/")
    return f"{parts[1]}/" if len(parts) > 2 else "(root)"


def long_functions(text: str) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > FUNCTION_LIMIT:
                out.append((node.name, length))
    return out


def summary(rev: str) -> tuple[dict[str, list[int]], list[str], list[str]]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    big, long = [], []
    for path, text in sources(rev).items():
        n = text.count("\n")
        per[package(path)][0] += n
        per[package(path)][1] += 1
        if n > MODULE_LIMIT:
            big.append(f"{path} ({n})")
        long += [f"{path}:{name} ({length})" for name, length in long_functions(text)]
    return per, big, long


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("rev", nargs="?", default="HEAD")
    args = p.parse_args(argv)
    before, big0, long0 = summary(args.base)
    after, big1, long1 = summary(args.rev)
    print(
        f"{'package':<14} {'lines ' + args.base[:8]:>15} {'files':>6} {'lines ' + args.rev[:8]:>15} {'files':>6}"
    )
    for pkg in sorted(set(before) | set(after)):
        b, a = before.get(pkg, [0, 0]), after.get(pkg, [0, 0])
        print(f"{pkg:<14} {b[0]:>15} {b[1]:>6} {a[0]:>15} {a[1]:>6}")
    tb = [sum(v[i] for v in before.values()) for i in (0, 1)]
    ta = [sum(v[i] for v in after.values()) for i in (0, 1)]
    print(f"{'total':<14} {tb[0]:>15} {tb[1]:>6} {ta[0]:>15} {ta[1]:>6}")
    for label, rows0, rows1 in (
        (f"modules over {MODULE_LIMIT} lines", big0, big1),
        (f"functions over {FUNCTION_LIMIT} lines", long0, long1),
    ):
        print(f"{label}: {len(rows0)} at {args.base[:8]}, {len(rows1)} at {args.rev[:8]}")
        for r in rows1:
            print(f"  {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
