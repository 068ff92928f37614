"""Claim files: every shipped claim is a valid sweep for both budgets; a broken one is one line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.claims import spec as cspec
from bench.claims.reproduce import check_claims, select_claims
from bench.config import ConfigError
from bench.sweeps.spec import build_cell_config, parse_spec

# The claims the issue names: adding a claim is adding a file, so this list only grows.
FIRST_CLAIMS = {
    "alibi-extrapolation",
    "postln-warmup",
    "nope-length",
    "swiglu",
    "qk-norm-lr-sensitivity",
    "entropy-collapse",
    "gqa",
    # issue 24's landmark claims (branch claims-new)
    "xiong-init-gradient",
    "deepnet-depth",
    "rmsnorm-equivalence",
    "attention-sinks",
}


def test_the_first_claims_ship_in_the_package():
    assert set(cspec.names()) >= FIRST_CLAIMS
    assert (cspec.CLAIM_DIR / "swiglu.yaml").resolve().parent.name == "claims"


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_every_shipped_claim_is_a_valid_sweep_whose_rule_names_its_axes(budget):
    claims = select_claims([])
    sweeps = check_claims(claims, budget, 0)
    owners = {c.id for c in claims if c.sweep is not None}
    assert set(sweeps) == owners
    for c in claims:
        assert c.citation and c.url.startswith("https://") and len(c.scale.split()) > 20
        assert sweeps[c.sweep_id]["name"] == f"claim-{c.sweep_id}"


def _size(sweep: dict) -> tuple[int, int, int]:
    """(steps, seeds, cells) of a sweep as data."""
    cells = math.prod(len(v) for v in sweep["compare"].values())
    return sweep["budget"]["max_steps"], sweep["seeds"], cells


def test_the_quick_budget_is_smaller_than_the_full_one():
    """No larger in steps, seeds or cells, and smaller in one (a claim that trains one
    step, xiong-init-gradient, is smaller in seeds and depths)."""
    for c in select_claims([]):
        if c.sweep is None:
            continue
        quick, full = _size(cspec.sweep_data(c, "quick")), _size(cspec.sweep_data(c, "full"))
        assert all(q <= f for q, f in zip(quick, full, strict=True)), c.id
        assert quick != full, c.id


def test_a_seed_offset_moves_every_training_and_data_seed_and_the_sampler_seed():
    c = cspec.load_claim("swiglu")
    base = cspec.sweep_data(c, "full")
    moved = cspec.sweep_data(c, "full", seed_offset=2)
    assert moved["base"]["train"]["seed"] == base["base"]["train"].get("seed", 0) + 2000
    assert moved["base"]["task"]["seed"] == base["base"]["task"].get("seed", 0) + 2000
    assert moved["seed"] == base.get("seed", 0) + 2
    assert base["seed_data"] is True and moved["seed_data"] is True  # replicates vary the data


def test_a_claim_that_shares_runs_brings_in_the_claim_that_owns_them(tmp_path):
    path = _write(tmp_path, "sharer", id="sharer", sweep=None, sweep_of="gqa", budgets={})
    chosen = [c.id for c in select_claims([str(path)])]
    assert chosen == ["gqa", "sharer"]


def test_every_shipped_claim_follows_the_protocol():
    for c in select_claims([]):
        assert c.caveat.strip() and c.requires
        assert any(t.role == "evidence" for t in c.tests)
        assert any(t.role == "control" for t in c.tests) or (c.no_control or "").strip()
        assert all(t.why.strip() for t in c.tests)
        assert all(v.offsets for v in c.versions)


# claims moved onto the width ladder (branch ladder-quality): version, earlier offsets
LADDER_QUALITY = {
    "rmsnorm-equivalence": (2, [[4, 5]]),
    "diff-attention-loss": (2, [[4, 5]]),
    "gqa": (3, [[0, 1], [4, 5]]),
}


def _heads(claim_id: str) -> dict[str, tuple[int, int, int]]:
    """Each full-budget cell's (d_model, query heads, key/value heads)."""
    spec = parse_spec(cspec.sweep_data(cspec.load_claim(claim_id), "full", 12))
    out = {}
    for key, overrides in spec.cells():
        m = build_cell_config(spec, overrides, key).model
        out[key] = (m.d_model, m.n_heads, m.kv_heads)
    return out


@pytest.mark.parametrize("claim_id", sorted(LADDER_QUALITY))
def test_the_quality_claims_run_on_a_width_ladder_of_fixed_head_size(claim_id):
    c = cspec.load_claim(claim_id)
    version, offsets = LADDER_QUALITY[claim_id]
    assert c.version == version and [v.offsets for v in c.versions] == offsets
    cspec.check_offset(c, "full", 12)
    with pytest.raises(ConfigError, match=f"version {version} must be judged"):
        cspec.check_offset(c, "full", offsets[-1][0])
    heads = _heads(claim_id)
    assert {d for d, _, _ in heads.values()} == {64, 128}
    assert len({d // h for d, h, _ in heads.values()}) == 1  # one head size at both rungs


def test_gqa_keeps_its_key_value_proportions_on_the_ladder():
    """MHA, GQA (a quarter of the query heads) and MQA: 8/2/1 at width 64, 16/4/1 at 128."""
    kv = {(d, key.split(",")[0]): k for key, (d, _, k) in _heads("gqa").items()}
    assert kv == {
        (64, "n_kv_heads=n_heads"): 8, (64, "n_kv_heads=n_heads/4"): 2, (64, "n_kv_heads=1"): 1,
        (128, "n_kv_heads=n_heads"): 16, (128, "n_kv_heads=n_heads/4"): 4, (128, "n_kv_heads=1"): 1,
    }  # fmt: skip


def test_budget_overrides_reach_dotted_keys_of_compare_and_tune():
    data = {"compare": {"train.lr": [1]}, "tune": {"params": {"train.lr": {"low": 1}}}}
    cspec.set_path(data, "compare.train.lr", [2, 3])
    cspec.set_path(data, "tune.params.train.lr", {"low": 5})
    cspec.set_path(data, "base.task.n_train", 7)
    assert data == {
        "compare": {"train.lr": [2, 3]},
        "tune": {"params": {"train.lr": {"low": 5}}},
        "base": {"task": {"n_train": 7}},
    }


def _write(tmp_path: Path, name: str, **changes) -> Path:
    data = yaml.safe_load((cspec.CLAIM_DIR / "swiglu.yaml").read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _test(**fields) -> dict:
    """A valid evidence test of swiglu.yaml with ``fields`` replaced (None removes one)."""
    t = {"kind": "better", "metric": "loss", "a": {"ffn": "swiglu"}, "b": {"ffn": "relu"},
         "sesoi": 0.02, "why": "half the paper's gain"}  # fmt: skip
    t.update(fields)
    return {k: v for k, v in t.items() if v is not None}


SWIGLU = {"model.ffn": "swiglu"}
CONTROL = _test(kind="equivalent", a={"ffn": "gelu"}, role="control", sesoi=0.03)

BROKEN = {
    "unknown metric": ({"tests": [_test(metric="nope"), CONTROL]}, "metric 'nope' is not defined"),
    "axis not compared": (
        {"tests": [_test(a={"norm": "pre"}), CONTROL]},
        "'norm' is not a compared axis; allowed: ffn",
    ),
    "value not in the axis": (
        {"tests": [_test(a={"ffn": "tanh"}), CONTROL]},
        "ffn='tanh' is not one of its values",
    ),
    "better without b": ({"tests": [_test(b=None), CONTROL]}, "needs 'b'"),
    "better without sesoi": ({"tests": [_test(sesoi=None), CONTROL]}, "needs 'sesoi'"),
    "a zero sesoi": ({"tests": [_test(sesoi=0), CONTROL]}, "tests.0.sesoi"),
    "near without value": (
        {"tests": [_test(kind="near", b=None), CONTROL]},
        "kind near: needs 'value'",
    ),
    "at_most with a sesoi": (
        {"tests": [_test(kind="at_most", b=None, value=2.0), CONTROL]},
        "kind at_most: 'sesoi' is not used",
    ),
    "a test without why": ({"tests": [_test(why=None), CONTROL]}, "tests.0.why"),
    "an empty why": ({"tests": [_test(why="  "), CONTROL]}, "tests.0.why"),
    "the old margin": ({"tests": [_test(margin=0.1), CONTROL]}, "'margin': replaced by sesoi"),
    "the old diverged_as_chance": (
        {"metrics": {"loss": {"key": "val/loss", "diverged_as_chance": False}}},
        "'diverged_as_chance': replaced by on_failure",
    ),
    "a policy that does not fit": (
        {"metrics": {"loss": {"key": "val/loss", "on_failure": "init_cap"}}},
        "on_failure: init_cap does not fit this metric; allowed: worst, exclude",
    ),
    "no caveat": ({"caveat": None}, "caveat"),
    "no precondition": ({"requires": []}, "requires"),
    "no control and no reason": ({"tests": [_test()]}, "no test has role: control"),
    "only controls": ({"tests": [CONTROL]}, "none has role evidence"),
    "a duplicate test": (
        # the same cells, swapped and with model. spelled out: the same contrast up to sign
        {"tests": [_test(), CONTROL, _test(kind="not_worse", a={"ffn": "relu"}, b=SWIGLU)]},
        "tests.2 duplicates tests.0",
    ),
    "a listed version not earlier": (
        {"versions": [{"version": 3, "offsets": [0], "why": "x"}]},
        "versions: version 3 is not earlier than version 3",
    ),
    "both sweep and sweep_of": ({"sweep_of": "gqa"}, "exactly one of 'sweep' and 'sweep_of'"),
    "unknown transform": (
        {"metrics": {"loss": {"key": "val/loss", "transform": "log2"}}},
        "metrics.loss.transform",
    ),
    "version below 1": ({"version": 0}, "version"),
    "unknown test kind": ({"tests": [_test(kind="wins"), CONTROL]}, "tests.0.kind"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_claim_file_is_refused_in_one_line_before_anything_runs(tmp_path, case):
    changes, message = BROKEN[case]
    path = _write(tmp_path, "swiglu", **changes)
    with pytest.raises(ConfigError) as err:
        check_claims(select_claims([str(path)]), "quick", 0)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_an_id_that_differs_from_the_file_name_is_refused(tmp_path):
    path = _write(tmp_path, "other", id="swiglu")
    with pytest.raises(ConfigError, match="differs from the file name"):
        cspec.load_claim(path)


BAD_ARGUMENTS = {
    "unknown claim": (["no-such-claim"], "claim 'no-such-claim': no such claim; allowed: "),
    "unknown budget": (["swiglu", "--budget", "huge"], "--budget huge: allowed: quick, full"),
    "negative offset": (
        ["swiglu", "--seed-offset", "-1"],
        "--seed-offset -1: allowed: an integer >= 0",
    ),
    "no workers": (["swiglu", "--workers", "0"], "--workers 0: allowed: an integer >= 1"),
    "an offset an earlier version saw": (
        ["swiglu", "--budget", "full", "--seed-offset", "1"],
        "claim swiglu: --seed-offset 1: version 3 must be judged on seed offsets no earlier "
        "version saw (1: 0, 1; 2: 4, 5)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bench_reproduce_refuses_bad_arguments_with_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, case
):
    from bench.cli import main

    args, message = BAD_ARGUMENTS[case]
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", *args, "--runs", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "reports").exists()


def test_a_bad_claim_as_a_real_command_prints_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "bench", "reproduce", "no-such-claim"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr and list(tmp_path.iterdir()) == []


def test_an_offset_an_earlier_version_saw_is_refused_by_the_real_command(tmp_path):
    cmd = [sys.executable, "-m", "bench", "reproduce", "swiglu", "--budget", "full",
           "--seed-offset", "0", "--runs", str(tmp_path / "r")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "version 3 must be judged on seed offsets no earlier version saw" in p.stderr
    assert "Traceback" not in p.stderr and list(tmp_path.iterdir()) == []


def test_the_quick_budget_and_fresh_offsets_are_not_refused():
    c = cspec.load_claim("swiglu")
    cspec.check_offset(c, "quick", 0)  # quick exercises the pipeline; it judges nothing
    cspec.check_offset(c, "full", 10)
    with pytest.raises(ConfigError, match="version 3 must be judged"):
        cspec.check_offset(c, "full", 0)


# The length claims on a width ladder: version, widths, head counts.
LENGTH_LADDERS = {
    "alibi-extrapolation": (3, [32, 64], [4, 8]),
    "rope-scaling-extrapolation": (2, [32, 64], [2, 4]),
    "nope-length": (3, [64, 128], [4, 8]),
}


@pytest.mark.parametrize("name", list(LENGTH_LADDERS))
def test_the_length_claims_run_at_their_own_width_and_twice_it_with_the_head_size_fixed(name):
    version, widths, heads = LENGTH_LADDERS[name]
    c = cspec.load_claim(name)
    sweep = cspec.sweep_data(c, "full")
    assert c.version == version
    assert sweep["scale"] == {
        "ladder": {"model.d_model": widths, "model.n_heads": heads},
        "budget": "steps",
    }
    model = sweep["base"]["model"]
    assert [model["d_model"], model["n_heads"]] == [widths[0], heads[0]]  # the one-size model
    assert widths[1] == 2 * widths[0]
    assert len({d // h for d, h in zip(widths, heads, strict=True)}) == 1  # one head size
    assert c.seen_offsets[version - 1] == [4, 5]  # the one-size version's offsets
    cspec.check_offset(c, "full", 12)
    with pytest.raises(ConfigError, match=f"version {version} must be judged"):
        cspec.check_offset(c, "full", 5)


@pytest.mark.parametrize(("claim", "ratio"), [("deepnet-depth", 2), ("xiong-init-gradient", None)])
def test_the_depth_claims_are_version_2_on_a_width_ladder_of_fixed_shape(claim, ratio):
    """Both depth claims moved onto a two-rung width ladder on fresh offsets: head size
    32 at every rung, deepnet-depth's d_ff 2d a ladder key of its own (its file sets d_ff;
    xiong-init-gradient keeps the 4d default)."""
    c = cspec.load_claim(claim)
    assert c.version == 2 and [(v.version, v.offsets) for v in c.versions] == [(1, [4, 5])]
    scale = cspec.sweep_data(c, "full")["scale"]
    assert scale["budget"] == "steps"
    ladder = scale["ladder"]
    widths, heads = ladder["model.d_model"], ladder["model.n_heads"]
    assert len(widths) == 2 and widths[1] == 2 * widths[0]
    assert [d // h for d, h in zip(widths, heads, strict=True)] == [32, 32]
    if ratio is not None:
        assert ladder["model.d_ff"] == [ratio * d for d in widths]
    else:
        assert "model.d_ff" not in ladder
    cspec.check_offset(c, "full", 12)
    with pytest.raises(ConfigError, match="version 2 must be judged"):
        cspec.check_offset(c, "full", 5)


@pytest.mark.parametrize("claim_id", ["attention-sinks", "gated-attention-sink"])
def test_the_sink_claims_are_at_version_2_on_the_width_ladder_and_refuse_offsets_4_and_5(
    claim_id,
):
    c = cspec.load_claim(claim_id)
    assert c.version == 2 and c.seen_offsets == {1: [4, 5]}
    owner = c if c.sweep is not None else cspec.load_claim(c.sweep_id)
    ladder = {"model.d_model": [64, 128], "model.n_heads": [4, 8]}
    assert owner.sweep["scale"] == {"ladder": ladder, "budget": "steps"}
    cspec.check_offset(c, "full", 12)
    for seen in (4, 5):
        with pytest.raises(ConfigError, match=f"claim {claim_id}: --seed-offset {seen}: version 2"):
            cspec.check_offset(c, "full", seen)
