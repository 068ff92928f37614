"""Shared fixtures: tiny configs that train in seconds on one CPU thread."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Tiny models gain nothing from threads, and two pytest-xdist workers share two
# cores: one thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("WANDB_SILENT", "true")
# Keep the measured caches (matmul peak, bf16 speedup per shape) out of the user's home,
# and share them between the xdist workers of one run: a bf16 speedup is measured once per
# model shape (about 2 s), not once per shape and worker.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"bench-test-cache-{_RUN}")
    os.makedirs(os.environ["XDG_CACHE_HOME"], exist_ok=True)
else:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-test-cache-")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests of a module fixture on one worker, and collect Slurm's first.

    A module-scoped fixture a test module defines (a trained run, a finished sweep)
    would be made once per xdist worker that runs one of its tests; in one
    ``xdist_group`` (``--dist loadgroup``) it is made once. A test that names its
    group itself keeps it.

    The Slurm tests share one cluster, so ``--dist loadgroup`` runs them one after
    another on a single xdist worker (``xdist_group("slurm")``, minutes of wall time).
    Collected last, they are the whole run's tail while the other worker idles;
    collected first, the other worker runs everything else meanwhile.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            for group in _module_fixtures(item):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)  # stable


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start installing Chromium when a browser test is selected and it is missing.

    On a fresh machine the install takes about 25 s; in the background it overlaps
    the tests collected before the browser tests, which wait for it
    (:func:`tests.browser.ensure_chromium`).
    """
    if any(item.get_closest_marker("browser") for item in session.items):
        from tests.browser import start_chromium_install

        start_chromium_install()


def _module_fixtures(item: pytest.Item) -> list[str]:
    """``module::fixture`` of each module-scoped fixture the item's own module defines."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    module = item.nodeid.split("::")[0]
    return [
        f"{module}::{name}"
        for name, defs in info.name2fixturedefs.items()
        if defs and defs[-1].scope == "module" and defs[-1].baseid == module
    ]


TINY = {
    "model.d_model": 32,
    "model.n_layers": 2,
    "model.n_heads": 2,
    "task.seq_len": 8,
    "task.n_train": 512,
    "task.n_val": 64,
    "task.batch_size": 32,
    "train.max_steps": 20,
    "train.val_every": 10,
    "train.warmup_steps": 2,
    "train.progress_bar": False,
    "tracking.mode": "disabled",
    "diagnostics.peak_flops": 1e11,  # MFU against a fixed peak: no per-test measurement
    "train.precision": "32-true",  # not auto: no per-test bf16 measurement, no timing-dependent dtype
    # the same data files, no PNGs: drawing them is most of a tiny run's time; tests of
    # a figure turn it back on
    "diagnostics.figures": False,
}


@pytest.fixture
def tiny(tmp_path):
    """Build a tiny RunConfig in a tmp run directory: ``tiny(**{"model.ffn": "swiglu"})``."""
    from bench.config import build_run_config

    def make(**overrides):
        o = {**TINY, "tracking.out_dir": str(tmp_path / "runs"), **overrides}
        return build_run_config(overrides=o)

    return make


@pytest.fixture(scope="session")
def trained_run():
    """A finished tiny run directory made by the real ``bench train``, shared by the whole
    session (``test_security.shared_trained_run``): read it, or change a copy of it."""
    from test_security import shared_trained_run

    return shared_trained_run()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny models gain nothing from threads, and on a
    shared 2-core box they lose a lot. Use: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
