"""Cells can be told apart and compared in optuna-dashboard: every trial of both phases
carries the cell's axis values; the seed study has them (and the tuned values) as parameters."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna_dashboard import wsgi

from bench.sweeps.layout import open_sweep_dir
from tests.finished_sweep import finished_sweep


@pytest.fixture(scope="module")
def storage():
    return open_sweep_dir(finished_sweep()[0]).open_storage()


def _trials(storage, name: str) -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_tuning_trials_carry_their_cell_axis_values_as_user_attributes(storage):
    for cell in ("pre", "post"):
        trials = _trials(storage, f"daily/tune/norm_placement={cell}")
        assert len(trials) == 2
        for t in trials:
            assert t.user_attrs["norm_placement"] == cell
            assert set(t.params) == {"train.lr"}  # the axes are not a search space here


def test_seed_trials_have_the_axes_and_tuned_values_as_parameters(storage):
    trials = _trials(storage, "daily/seeds")
    assert sorted(t.params["model.norm_placement"] for t in trials) == ["post", "pre"]
    for t in trials:
        overrides = json.loads(t.user_attrs["overrides"])
        assert t.params["train.lr"] == pytest.approx(overrides["train.lr"])
        assert t.distributions["model.norm_placement"] == CategoricalDistribution(["pre", "post"])
        assert isinstance(t.distributions["train.lr"], FloatDistribution)
        assert t.user_attrs["norm_placement"] == t.params["model.norm_placement"]


def _get(app, path: str) -> dict:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200"), status
    return json.loads(body)


def test_optuna_dashboard_serves_the_seed_study_with_the_axis_as_a_parameter(storage):
    app = wsgi(storage)
    summaries = _get(app, "/api/studies")["study_summaries"]
    studies = {s["study_name"]: s["study_id"] for s in summaries}
    detail = _get(app, f"/api/studies/{studies['daily/seeds']}")
    space = {p["name"] for p in detail["union_search_space"]}
    assert {"model.norm_placement", "train.lr"} <= space  # Slice / Parallel Coordinate axes
    attrs = {a["key"] for a in detail["union_user_attrs"]}
    assert {"norm_placement", "cell", "phase", "seed"} <= attrs  # trial-table columns
