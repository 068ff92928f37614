"""The test suite's own scheduling: tests that share one resource run on one xdist worker.

The Slurm tests share one cluster and the report's trained sweep is trained once per
worker, so both rely on ``--dist loadgroup`` honouring ``xdist_group``. pytest 9.2
with pytest-xdist 3.8.0 silently stops grouping (pytest-xdist issue 1386: xdist
writes the group into ``item._nodeid``, which pytest 9.2 no longer reads), hence
the pin in constraints.txt; this test fails if a version bump brings that back.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

GROUPED = textwrap.dedent(
    """
    import pytest

    @pytest.mark.xdist_group("shared")
    def test_first():
        pass

    @pytest.mark.xdist_group("shared")
    def test_second():
        pass

    def test_free_1():
        pass

    def test_free_2():
        pass
    """
)


def test_tests_of_one_xdist_group_run_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadgroup", "-v", "test_grouped.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = re.findall(r"\[(gw\d)\].*PASSED test_grouped.py::(test_\w+)", proc.stdout)
    ran_on = {test: worker for worker, test in passed}
    assert set(ran_on) == {"test_first", "test_second", "test_free_1", "test_free_2"}
    assert ran_on["test_first"] == ran_on["test_second"]
