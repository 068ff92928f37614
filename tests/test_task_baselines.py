"""Tasks know their chance levels; runs are judged against them.

The chance values a task reports (:meth:`BenchDataModule.baseline`) are checked
against the validation data itself: a predictor that knows only the output
format (the trivially predictable positions the batch marks, and which tokens
occur at the other scored positions, both read off the data) is scored with the
same loss and metric code the LightningModule uses.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from rich.console import Console
from torch import Tensor, nn

from bench.cli.run_table import print_run_summary
from bench.config import TaskConfig
from bench.tasks import EOS, IGNORE, N_SPECIAL, build_datamodule
from bench.tasks.baseline import (
    COLLAPSE_DIVERSITY,
    COLLAPSED,
    DID_NOT_LEARN,
    LEARNED,
    Baseline,
    judge_learning,
)
from bench.training.module import BenchModule, nontrivial_mask, prediction_diversity, token_metrics
from bench.training.run import train_run
from bench.training.trainer import RunData

PROBES = ("copy", "reverse", "sort", "recall", "modadd")
ARCHS = ("decoder", "encoder_decoder")
NEG = -1e4  # a logit no softmax gives any mass to


def task_cfg(name: str, **kw) -> TaskConfig:
    base = {
        "name": name,
        "seq_len": 6,
        "n_symbols": 12,
        "modulus": 7,
        "n_train": 64,
        "n_val": 512,
        "batch_size": 64,
        "eval_scales": [1, 2],
    }
    return TaskConfig(**(base | kw))


def within_noise(samples: np.ndarray, expected: float) -> bool:
    """The sample mean is within 4 standard errors (plus one sample's worth) of ``expected``."""
    n = len(samples)
    return abs(samples.mean() - expected) <= 4 * samples.std() / math.sqrt(n) + 1 / n


def format_only_logits(labels: Tensor, trivial: Tensor, possible: Tensor, vocab: int) -> Tensor:
    """Uniform over ``possible`` tokens at every scored position, the label at trivial ones."""
    logits = torch.full((*labels.shape, vocab), NEG)
    logits[..., possible] = 0.0
    at = trivial.nonzero(as_tuple=True)
    logits[at] = NEG
    logits[(*at, labels[at])] = 0.0
    return logits


def tier_batches(dm, tier: int) -> list[dict[str, Tensor]]:
    return list(dm.val_dataloader()[tier])


def possible_tokens(batches: list[dict[str, Tensor]]) -> Tensor:
    """The label ids that occur at non-trivial scored positions of the data."""
    seen = torch.cat([b["labels"][nontrivial_mask(b["labels"], b["trivial"])] for b in batches])
    return seen.unique()


# ----------------------------------------------------------------------------- chance values


@pytest.mark.parametrize(
    ("name", "arch"),
    [(p, a) for p in PROBES for a in ARCHS] + [("scan", "decoder"), ("scan", "encoder_decoder")],
)
def test_chance_values_match_a_format_aware_uniform_guesser_on_the_validation_data(name, arch):
    kw = {"seq_len": 8, "n_val": 2048} if name == "scan" else {}
    dm = build_datamodule(task_cfg(name, **kw), arch)
    baseline = dm.baseline().as_dict()
    gen = torch.Generator().manual_seed(0)
    for tier, length in enumerate(dm.eval_lengths):
        batches = tier_batches(dm, tier)
        possible = possible_tokens(batches)
        # Loss: exact, with the loss the LightningModule computes.
        total, count = 0.0, 0
        for b in batches:
            logits = format_only_logits(b["labels"], b["trivial"], possible, dm.vocab_size)
            n = int((b["labels"] != IGNORE).sum())
            loss = F.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(), ignore_index=IGNORE)
            total, count = total + float(loss) * n, count + n
        assert total / count == pytest.approx(baseline[f"val/loss@{length}"], rel=1e-5)
        # Accuracy and exact match: random guesses over the possible tokens, scored by
        # the LightningModule's metric code; means within sampling noise.
        acc, acc_nt, exact = [], [], []
        for _ in range(4):
            for b in batches:
                logits = format_only_logits(b["labels"], b["trivial"], possible, dm.vocab_size)
                logits = logits + torch.rand(logits.shape, generator=gen)  # random argmax
                m = token_metrics(logits, b["labels"], b["trivial"])
                hit = logits.argmax(-1) == b["labels"]
                scored = b["labels"] != IGNORE
                acc.append(hit[scored].float())
                acc_nt.append(hit[nontrivial_mask(b["labels"], b["trivial"])].float())
                exact.append((hit | ~scored).all(-1).float())
                assert float(m["acc"]) == pytest.approx(float(hit[scored].float().mean()))
        for key, samples in (("acc", acc), ("acc_nontrivial", acc_nt), ("exact_match", exact)):
            expected = baseline[f"val/{key}@{length}"]
            assert within_noise(torch.cat(samples).numpy(), expected), (key, length, expected)
        if name == "scan":  # exact match chance is the pool's mean of 7**-(len+1)
            per_example = [
                7.0 ** -int((b["labels"][i] != IGNORE).sum())
                for b in batches
                for i in range(len(b["labels"]))
            ]
            assert within_noise(np.array(per_example), baseline[f"val/exact_match@{length}"])


def test_text_chance_is_the_unigram_model_measured_on_the_validation_windows():
    cfg = task_cfg("text", seq_len=64, max_bytes=300_000, n_val=512, eval_scales=[1, 2])
    dm = build_datamodule(cfg, "decoder")
    baseline = dm.baseline().as_dict()
    stream = dm.train_dataset.stream.numpy()
    counts = np.bincount(stream, minlength=256) + 1.0
    logp = np.log(counts / counts.sum())
    top = int(np.bincount(stream, minlength=256).argmax())
    assert baseline["val/loss"] == pytest.approx(dm.unigram_entropy)
    for tier, length in enumerate(dm.eval_lengths):
        labels = torch.cat([b["labels"] for b in tier_batches(dm, tier)]).numpy() - N_SPECIAL
        # every length cuts the same spans (start at random: independent samples) into
        # back-to-back windows, so one sample is one span's bytes
        labels = labels.reshape(cfg.n_val, -1)
        window_loss = -logp[labels].mean(axis=1)
        window_acc = (labels == top).mean(axis=1)
        assert within_noise(window_loss, baseline[f"val/loss@{length}"])
        assert within_noise(window_acc, baseline[f"val/acc@{length}"])
        assert baseline[f"val/acc_nontrivial@{length}"] == baseline[f"val/acc@{length}"]
        assert baseline[f"val/exact_match@{length}"] is None


def test_chance_values_follow_from_each_task_definition():
    reverse = build_datamodule(
        task_cfg("reverse", seq_len=8, n_symbols=12, eval_scales=[1, 2]), "decoder"
    )
    b = reverse.baseline().as_dict()
    assert b["val/loss"] == pytest.approx(8 * math.log(12) / 9)  # 2.21, the example
    assert b["val/loss@16"] == pytest.approx(16 * math.log(12) / 17)
    assert b["val/acc"] == pytest.approx((8 / 12 + 1) / 9)
    assert b["val/acc_nontrivial"] == pytest.approx(1 / 12)
    assert b["val/exact_match"] == pytest.approx(12.0**-8)
    assert b["uniform/val/loss"] == pytest.approx(math.log(4 + 12))
    recall = build_datamodule(task_cfg("recall", n_symbols=32), "decoder").baseline().as_dict()
    assert recall["val/loss"] == pytest.approx(math.log(32) / 2)  # one value, then the end
    assert recall["val/acc"] == pytest.approx((1 / 32 + 1) / 2)  # ~0.52: the end is half
    assert recall["val/exact_match"] == pytest.approx(1 / 32)
    modadd = build_datamodule(task_cfg("modadd", modulus=7), "decoder").baseline()
    assert modadd.loss == pytest.approx(6 * math.log(7) / 7)
    assert "7 residues" in modadd.description
    scan = build_datamodule(task_cfg("scan", seq_len=8), "decoder").baseline().as_dict()
    assert scan["val/loss"] == pytest.approx(math.log(7)) == scan["val/loss@16"]


def test_every_task_reports_a_baseline_for_every_eval_length():
    for name in (*PROBES, "scan"):
        cfg = task_cfg(name, seq_len=8, n_symbols=32, eval_scales=[1, 2, 4])
        dm = build_datamodule(cfg, "decoder")
        baseline = dm.baseline()
        assert isinstance(baseline, Baseline)
        assert baseline.lengths == tuple(dm.eval_lengths)
        keys = baseline.as_dict()
        for length in dm.eval_lengths:
            for metric in ("loss", "acc", "acc_nontrivial", "exact_match"):
                assert f"val/{metric}@{length}" in keys
        assert keys["val/loss"] == baseline.loss == keys[f"val/loss@{dm.eval_lengths[0]}"]


# ----------------------------------------------------------------------------- trivial masks


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PROBES)
def test_probe_batches_mark_exactly_the_end_token_as_trivial(name, arch):
    dm = build_datamodule(task_cfg(name, n_val=64), arch)
    batches = [next(iter(dm.train_dataloader()))] + [next(iter(v)) for v in dm.val_dataloader()]
    for b in batches:
        labels, trivial = b["labels"], b["trivial"]
        assert trivial.dtype == torch.bool and trivial.shape == labels.shape
        assert torch.equal(trivial, labels == EOS)
        assert (trivial.sum(-1) == 1).all()  # one end token per example
        last_scored = (labels != IGNORE).cumsum(-1).argmax(-1)  # index of the last scored label
        assert torch.equal(trivial.float().argmax(-1), last_scored)
        assert not trivial[labels == IGNORE].any()  # padding and prompt are never "trivial"


def test_scan_and_text_batches_have_no_trivial_positions():
    for name, kw in (("scan", {"seq_len": 8}), ("text", {"seq_len": 32, "max_bytes": 50_000})):
        dm = build_datamodule(task_cfg(name, n_val=64, **kw), "decoder")
        b = next(iter(dm.val_dataloader()[0]))
        assert not b["trivial"].any()
        assert "none" in dm.baseline().trivial
    scan = build_datamodule(task_cfg("scan", seq_len=8, n_val=64), "decoder")
    b = next(iter(scan.val_dataloader()[0]))
    assert (b["labels"] == EOS).any()  # the end is scored but not trivial: lengths vary


# ----------------------------------------------------------------------------- metrics in validation


class FormatOnly(nn.Module):
    """A decoder that knows only the probe's output format: it ignores the input tokens.

    Every sequence of one size has the same length, so the end token's position
    is the last one; everywhere else the output is uniform over ``symbols``.
    """

    def __init__(self, vocab: int, symbols: Tensor) -> None:
        super().__init__()
        self.vocab, self.symbols = vocab, symbols

    def forward(self, input_ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        b, t = input_ids.shape
        logits = torch.full((b, t, self.vocab), NEG)
        logits[:, :, self.symbols] = 0.0
        logits[:, -1, :] = NEG
        logits[:, -1, EOS] = 0.0
        return logits


def validate_format_only(tiny, name: str, **task) -> tuple[dict[str, float], dict]:
    cfg = tiny(**{"task.name": name, "task.n_val": 512, "task.eval_scales": [1, 2], **task})
    dm = build_datamodule(cfg.task, "decoder")
    dm.setup()
    answer = possible_tokens(tier_batches(dm, 0))
    cfg.model.vocab_size = dm.vocab_size
    module = BenchModule(cfg, dm.eval_lengths)
    module.model = FormatOnly(dm.vocab_size, answer)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=RunData(dm), verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return metrics, dm.baseline().as_dict()


def test_a_model_that_gets_only_the_end_token_right_on_recall_has_nontrivial_accuracy_at_chance(
    tiny,
):
    metrics, baseline = validate_format_only(tiny, "recall", **{"task.n_symbols": 32})
    # The issue's sweep: val/acc 0.52 "only because the end token is half of the scored
    # positions". Ties go to the first value, so accuracy there is that value's share.
    assert metrics["val/acc"] > 0.5
    assert metrics["val/acc_nontrivial"] < 0.1
    assert metrics["val/acc_nontrivial"] == pytest.approx(2 * metrics["val/acc"] - 1, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(baseline["val/loss"], rel=1e-5)
    for length in (8, 16):
        assert metrics[f"val/loss@{length}"] == pytest.approx(baseline[f"val/loss@{length}"])
        assert f"val/acc_nontrivial@{length}" in metrics
    status, reason = judge_learning(baseline, metrics)
    assert status != LEARNED, reason


def test_a_model_whose_output_ignores_the_input_is_judged_collapsed(tiny):
    metrics, baseline = validate_format_only(tiny, "reverse", **{"task.n_symbols": 12})
    assert metrics["val/pred_diversity"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(baseline["val/loss"], rel=1e-5)
    status, reason = judge_learning(baseline, metrics, "uniform over 12 symbols")
    assert status == COLLAPSED
    assert "val/pred_diversity 0.000" in reason and f"{baseline['val/loss']:.3g}" in reason


def test_prediction_diversity_is_zero_for_a_constant_output_and_high_for_confident_distinct_ones():
    torch.manual_seed(0)
    mask = torch.ones(4, 8, dtype=torch.bool)
    constant = torch.randn(12).expand(4, 8, 12)
    assert float(prediction_diversity(constant, mask)) == pytest.approx(0.0, abs=1e-6)
    confident_same = torch.zeros(4, 8, 12)
    confident_same[..., 3] = 50.0
    assert float(prediction_diversity(confident_same, mask)) == 0.0  # one token, always
    targets = torch.randint(0, 12, (4, 8))
    confident_distinct = F.one_hot(targets, 12).float() * 50.0
    assert float(prediction_diversity(confident_distinct, mask)) > 0.99
    untrained = 0.1 * torch.randn(4, 8, 12)  # small random logits: near uniform everywhere
    assert float(prediction_diversity(untrained, mask)) < COLLAPSE_DIVERSITY
    only_some = mask.clone()
    only_some[:, :4] = False  # masked-out positions do not count
    mixed = confident_distinct.clone()
    mixed[:, 4:] = constant[:, 4:]
    assert float(prediction_diversity(mixed, only_some)) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- the verdict


REVERSE = {  # chance values of reverse with 12 symbols at size 8
    "val/loss": 8 * math.log(12) / 9,
    "val/acc": (8 / 12 + 1) / 9,
    "val/acc_nontrivial": 1 / 12,
    "val/exact_match": 12.0**-8,
    "uniform/val/loss": math.log(16),
}


def test_judge_learning_follows_its_stated_rule():
    def judge(**m):
        return judge_learning(REVERSE, {f"best/val/{k}": v for k, v in m.items()}, "12 symbols")

    status, reason = judge(loss=0.2, acc_nontrivial=0.99, pred_diversity=0.7)
    assert status == LEARNED and "0.2" in reason and "91% below chance 2.21" in reason
    # Within 10% of chance: did not learn, however diverse the predictions.
    status, reason = judge(loss=2.0, acc_nontrivial=0.12, pred_diversity=0.4)
    assert (status, reason) == (
        DID_NOT_LEARN,
        "best val/loss 2 is within 10% of chance 2.21 (12 symbols)",
    )
    # Loss beats chance but no more answer tokens are right: did not learn.
    status, reason = judge(loss=1.9, acc_nontrivial=0.1, pred_diversity=0.3)
    assert status == DID_NOT_LEARN and "non-trivial accuracy 0.1 does not reach 0.175" in reason
    # Near-constant predictions after training moved the loss to chance: collapsed.
    assert judge(loss=2.21, acc_nontrivial=0.09, pred_diversity=0.01)[0] == COLLAPSED
    # ... but a model that never moved from uniform over the vocabulary did not learn.
    status, reason = judge(loss=2.77, acc_nontrivial=0.06, pred_diversity=0.004)
    assert status == DID_NOT_LEARN and "not below chance" in reason
    # The best validation's values take precedence over the last ones.
    metrics = {"best/val/loss": 0.1, "best/val/acc_nontrivial": 0.98, "val/loss": 3.0}
    assert judge_learning(REVERSE, metrics)[0] == LEARNED
    assert judge_learning(REVERSE, {"val/loss": float("nan")})[0] == DID_NOT_LEARN


def test_the_verdict_module_imports_without_torch():
    code = (
        "import sys, bench.tasks.baseline; "
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- real runs


def test_a_copy_run_that_learns_is_judged_learned_in_its_result_and_summary(tiny):
    cfg = tiny(
        **{
            "task.n_train": 2048,
            "train.max_steps": 200,
            "train.val_every": 100,
            "train.lr": 1e-2,  # the auto init (xavier, sqrt(d) embeddings) at its usual lr
            "task.eval_scales": [1, 2],
        }
    )
    result = train_run(cfg)
    assert result.status == "completed"
    assert result.learning == LEARNED, result.learning_reason
    summary = json.loads((result.run_dir / "summary.json").read_text())
    chance = 8 * math.log(16) / 9
    assert summary["baseline"]["val/loss"] == pytest.approx(chance)
    assert summary["baseline"]["val/loss@16"] == pytest.approx(16 * math.log(16) / 17)
    assert summary["learning"] == {"status": LEARNED, "reason": result.learning_reason}
    assert f"below chance {chance:.3g}" in result.learning_reason
    assert result.metrics["best/val/acc_nontrivial"] > 0.9
    assert result.metrics["best/val/pred_diversity"] > 0.3  # calibration: 0.6-0.75 measured


def test_a_learning_rate_too_small_to_learn_is_judged_did_not_learn_everywhere(tiny):
    from wandb_runs import find_run_files, read_run

    cfg = tiny(
        **{
            "train.lr": 1e-6,
            "train.max_steps": 60,
            "train.val_every": 30,
            "task.eval_scales": [1],
            "tracking.mode": "offline",
        }
    )
    result = train_run(cfg)
    assert result.status == "completed"  # status.json's states are unchanged
    assert result.learning == DID_NOT_LEARN
    best = result.metrics["best/val/loss"]
    assert result.learning_reason == (
        f"best val/loss {best:.3g} is not below chance {8 * math.log(16) / 9:.3g} "
        "(uniform over the 16 symbols at each answer position, end token known)"
    )
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["learning"]["status"] == DID_NOT_LEARN
    run = read_run(find_run_files(result.run_dir / "wandb")[0])
    assert run.summary["learning"] == DID_NOT_LEARN
    assert run.summary["learning_reason"] == result.learning_reason
    console = Console(record=True, width=200)
    print_run_summary(result, console)
    assert f"learning: did not learn: {result.learning_reason}" in console.export_text()


def test_the_datamodule_baseline_is_reachable_from_a_callback_during_training(tiny):
    class Peek(Callback):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def on_train_batch_end(self, trainer, *args) -> None:
            self.seen.append(trainer.datamodule.baseline().loss)

    cfg = tiny(**{"task.name": "reverse", "task.n_symbols": 12, "train.max_steps": 3})
    peek = Peek()
    train_run(cfg, callbacks=[peek])
    assert peek.seen == pytest.approx([8 * math.log(12) / 9] * 3)
