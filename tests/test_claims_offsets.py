"""Reports at different seed offsets: each leaves its verdicts, and a report says where
the offsets agree, comparing only verdicts of the same claim file."""

from __future__ import annotations

import json

from bench.claims.offsets import VERDICTS, agreement, sibling_verdicts, write_verdicts


def rec(status: str, sha: str = "aaa") -> dict:
    return {"version": 2, "sha256": sha, "status": status, "reason": "..."}


def test_offsets_that_agree_and_differ_are_named_claim_by_claim():
    here = {"xiong": rec("consistent"), "rmsnorm": rec("consistent"), "gqa": rec("inconclusive")}
    others = {4: {"xiong": rec("consistent"), "rmsnorm": rec("inconclusive"),
                  "gqa": rec("inconclusive")}}  # fmt: skip
    found = agreement(here, 5, others)
    assert found is not None and found.offsets == [4, 5]
    assert {r["id"]: (r["verdicts"], r["agree"]) for r in found.rows} == {
        "xiong": (["consistent", "consistent"], "yes"),
        "rmsnorm": (["inconclusive", "consistent"], "no"),
        "gqa": (["inconclusive", "inconclusive"], "yes"),
    }
    assert found.sentence == (
        "Judged at seed offsets 4, 5 with the same claim files, the verdicts agree on 2 of 3 "
        "claims; they differ on rmsnorm (4: inconclusive, 5: consistent)."
    )


def test_a_changed_claim_file_is_not_compared_with_the_old_ones_verdicts():
    found = agreement({"nope": rec("consistent", sha="new")}, 6, {5: {"nope": rec("consistent")}})
    assert found is None  # nothing judged twice with one file: nothing to say
    both = agreement(
        {"nope": rec("consistent", sha="new"), "swiglu": rec("inconclusive")},
        6,
        {5: {"nope": rec("consistent"), "swiglu": rec("consistent")}},
    )
    assert both is not None
    assert [(r["id"], r["verdicts"], r["agree"]) for r in both.rows] == [
        ("nope", ["other version", "consistent"], "–"),
        ("swiglu", ["consistent", "inconclusive"], "no"),
    ]
    assert "agree on 0 of 1 claims" in both.sentence


def test_siblings_are_the_other_offsets_reports_of_the_same_budget(tmp_path):
    for name, budget, offset in [("claims-offset4", "full", 4), ("claims-quick", "quick", 0),
                                 ("claims-offset5", "full", 5), ("claims-copy5", "full", 5)]:  # fmt: skip
        (tmp_path / name).mkdir()
        write_verdicts({"x": rec("consistent")}, budget, offset, tmp_path / name / VERDICTS)
    (tmp_path / "claims-torn").mkdir()
    (tmp_path / "claims-torn" / VERDICTS).write_text('{"budget": "full", "seed_')
    (tmp_path / "claims-old").mkdir()  # a report written before verdicts.json existed
    found = sibling_verdicts(tmp_path / "claims-offset5", "full", 5)
    assert found == {4: {"x": rec("consistent")}}
    assert json.loads((tmp_path / "claims-offset4" / VERDICTS).read_text())["seed_offset"] == 4
    assert sibling_verdicts(tmp_path / "nowhere" / "claims", "full", 0) == {}
