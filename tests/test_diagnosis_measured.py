"""Each rule's measured precision and recall: how the evaluation counts (planted = cause
planted and the run failed; fired = evidence on a run with a symptom), and the figures the
rules use agree with the table in docs/diagnoses.md."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from bench.diagnoses import RULES
from bench.diagnoses.measured import MEASURED

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"tools/{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _eval_tool():
    return _tool("diagnosis_eval")


def labelled(tool, plant, causes, outcome, fired, symptom="the run did not learn"):
    row = {"plant": plant, "causes": causes, "outcome": outcome, "config": plant, "seed": 2}
    return tool.Labelled(row, set(fired), symptom if outcome != "learned" else None)


def test_precision_and_recall_count_planted_failures_and_diagnoses_on_runs_with_a_symptom():
    tool = _eval_tool()
    runs = [
        # two failed runs with the cause planted: one found, one missed
        labelled(tool, "post", ["uniform_attention"], "did_not_learn", ["uniform_attention"]),
        labelled(tool, "post", ["uniform_attention"], "did_not_learn", []),
        # planted but it learned: not a positive, and no symptom means no diagnosis
        labelled(tool, "post", ["uniform_attention"], "learned", ["uniform_attention"]),
        # a failed run of another cause where the rule fires: a false positive
        labelled(tool, "high_lr", ["loss_spikes"], "diverged", ["uniform_attention"]),
        # a healthy run that learned: the evidence is a watch, not a false alarm
        labelled(tool, "healthy", [], "learned", ["uniform_attention"]),
    ]
    m = tool.measure(runs)["uniform_attention"]
    assert (m.planted, m.fired, m.hits, m.healthy_alarms) == (2, 2, 1, 0)
    assert (m.precision, m.recall) == (0.5, 0.5) and not m.passes()
    table = tool.table(runs, tool.measure(runs))
    row = next(x for x in table.splitlines() if x.startswith("| uniform_attention |"))
    assert "| 2 | 2 | 0.50 | 0.50 | 0 of 1 | 1 of 1 | demoted to a watch |" in row


def test_every_rule_has_its_figures_and_they_match_the_docs_table():
    assert set(MEASURED) == set(RULES)
    doc = (ROOT / "docs/diagnoses.md").read_text()
    doc = doc.split("\n## The figures", 1)[1].split("\n## ", 1)[0]  # the figures in use
    for name, m in MEASURED.items():
        row = re.search(rf"^\| {name} \| (\d+) \| (\d+) \| ([\d.–]+) \| ([\d.–]+) \|", doc, re.M)
        assert row, f"docs/diagnoses.md has no row for {name}"
        planted, fired, precision, recall = row.groups()
        assert (int(planted), int(fired)) == (m.planted, m.fired), name
        shown = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
        assert (precision, recall) == (shown(m.precision), shown(m.recall)), name


def test_the_halves_are_fixed_by_seed_and_the_first_held_out_seeds_now_tune(capsys):
    corpus = _tool("diagnosis_corpus")
    assert corpus.HALVES == {"tune": (0, 1, 2, 3), "held_out": (4, 5, 6, 7)}
    assert corpus.main(["--root", "unused", "--half", "tune", "--seeds", "2", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds 5: not in the tune half (seeds 0, 1, 2, 3)" in err


def test_a_corpus_with_a_run_of_an_earlier_plant_or_label_is_refused(tmp_path, capsys):
    corpus, tool = _tool("diagnosis_corpus"), _eval_tool()
    row = {"run": "lr_far_below-s0", "run_dir": "runs/x", "config": "lr_far_below", "seed": 0,
           "half": "tune", "config_digest": corpus.digest("lr_far_below"), "outcome": "learned"}  # fmt: skip
    row = corpus.label(row)
    (tmp_path / "labels.json").write_text(json.dumps({"runs": [row]}))
    assert tool.stale(tmp_path) == []
    for changed in ({"config_digest": "0123456789ab"}, {"causes": ["uniform_attention"]}):
        (tmp_path / "labels.json").write_text(json.dumps({"runs": [{**row, **changed}]}))
        assert tool.main([str(tmp_path)]) == 2
        assert "1 runs made or labelled by an earlier version" in capsys.readouterr().err
