"""The LightningModule: loss, metrics, and the optimizer of :mod:`bench.training.optimizer`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import RunConfig
from bench.model import build_model
from bench.tasks.base import val_sets
from bench.tasks.vocab import IGNORE
from bench.training.optimizer import build_optimizer


def forward_logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Logits for a batch of either architecture (the batch keys say which)."""
    if "src" in batch:
        return model(batch["src"], batch["tgt_in"], batch.get("src_pad"))
    return model(batch["input_ids"], batch.get("pad_mask"))


def nontrivial_mask(labels: Tensor, trivial: Tensor | None) -> Tensor:
    """Scored positions that are not trivially predictable."""
    scored = labels != IGNORE
    return scored if trivial is None else scored & ~trivial


def token_metrics(
    logits: Tensor, labels: Tensor, trivial: Tensor | None = None
) -> dict[str, Tensor]:
    """Token accuracy and exact match over labeled positions.

    Exact match uses that greedy decoding reproduces the whole answer exactly
    when, under teacher forcing, every answer position's argmax is right: each
    greedy step then sees the same prefix as the teacher-forced one.
    ``acc_nontrivial`` is the accuracy over labeled positions that ``trivial``
    (the batch's mask of trivially predictable labels, e.g. end tokens) leaves.
    """
    mask = labels != IGNORE
    hit = (logits.argmax(-1) == labels) & mask
    n_tok = mask.sum().clamp(min=1)
    has_answer = mask.any(-1)
    seq_ok = (hit | ~mask).all(-1) & has_answer
    nontrivial = nontrivial_mask(labels, trivial)
    return {
        "acc": hit.sum() / n_tok,
        "acc_nontrivial": (hit & nontrivial).sum() / nontrivial.sum().clamp(min=1),
        "exact_match": seq_ok.sum() / has_answer.sum().clamp(min=1),
        "n_tokens": mask.sum(),
        "n_nontrivial": nontrivial.sum(),
        "n_seqs": has_answer.sum(),
    }


def z_loss_term(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``log(Z)^2`` over the rows of ``logits [N, V]`` that ``mask [N]`` keeps,
    ``Z = sum_v exp(logit_v)`` (Chowdhery et al. 2022, PaLM, Section 5: the auxiliary loss
    ``1e-4 * log^2 Z`` "to encourage the softmax normalizer log(Z) to be close to 0";
    Wortsman et al. 2023: it mitigates output-logit divergence). The
    caller multiplies it by ``train.z_loss``."""
    scored = logits[mask]
    log_z = torch.logsumexp(scored.to(torch.promote_types(scored.dtype, torch.float32)), dim=-1)
    if log_z.numel() == 0:
        return logits.new_zeros(())
    return log_z.square().mean()


def prediction_diversity(logits: Tensor, mask: Tensor) -> Tensor:
    """How much the predicted distributions at ``mask``'s positions differ, in [0, 1].

    ``1 - mean_i H(p_i) / H(mean_i p_i)``: the generalized Jensen-Shannon
    divergence of the predictions (Lin 1991, "Divergence measures based on the
    Shannon entropy") as a fraction of the entropy of their mean. 0 when every
    position gets the same distribution (collapsed, or untrained: near-uniform
    everywhere), near 1 when each prediction is confident and they differ. A
    confident constant prediction (``H(mean) = 0``) also gives 0.
    """
    logp = torch.log_softmax(logits[mask].float(), dim=-1)  # [N, V]
    if logp.shape[0] == 0:
        return logp.new_zeros(())
    p = logp.exp()
    h_each = -(p * logp).sum(-1).mean()
    mean_p = p.mean(0)
    h_mean = -(mean_p * mean_p.clamp_min(1e-30).log()).sum()
    if h_mean < 1e-6:
        return logp.new_zeros(())
    return (1 - h_each / h_mean).clamp(0.0, 1.0)


def written_this_step(trainer: L.Trainer) -> bool:
    """Whether a value logged in this training step reaches anything: Lightning writes it to
    the loggers (every ``log_every_n_steps`` steps, or when the run stops), or it is the
    run's last step (``trainer.callback_metrics`` keeps the last logged value, which
    ``summary.json`` records). At the other steps Lightning keeps only the latest value
    and drops it at the next log call."""
    if trainer.global_step + 1 >= trainer.max_steps > 0:
        return True
    connector = getattr(trainer, "_logger_connector", None)  # Lightning's own test of it
    return bool(getattr(connector, "should_update_logs", True))


class WeightedMeans:
    """Per key, the mean of the values added, each weighted by its count: Lightning's
    ``self.log(..., batch_size=n)`` reduction over an epoch, with its arithmetic (a
    float32 sum of ``value * n``, an integer count, divided at the end), so the means
    equal those Lightning computes from one log call a batch."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[Tensor, Tensor]] = {}

    def add(self, key: str, value: Tensor, count: int) -> None:
        dtype = torch.get_default_dtype()
        total, n = self._sums.get(key) or (torch.tensor(0.0, dtype=dtype), torch.tensor(0))
        value = value.detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(dtype)
        self._sums[key] = (total + value * count, n + count)

    def take(self) -> dict[str, Tensor]:
        """Each key's mean, in the order the keys were first added; then empty."""
        out = {key: total / n for key, (total, n) in self._sums.items()}
        self._sums = {}
        return out


class BenchModule(L.LightningModule):
    """Trains one ModelConfig on one task; logs the fixed metric keys of DESIGN.md."""

    def __init__(self, cfg: RunConfig, eval_lengths: list[int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        t = cfg.train
        self.model = build_model(cfg.model, t.parameterization, t.mup_base_width)
        self.eval_lengths = list(eval_lengths or [cfg.task.seq_len])
        self.val_sets = val_sets(cfg.task, self.eval_lengths)  # (key suffix, length) per loader
        self.save_hyperparameters(
            {"cfg": cfg.model_dump(mode="json"), "eval_lengths": self.eval_lengths}
        )
        self.diverged = False
        self.val_means = WeightedMeans()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return forward_logits(self.model, batch)

    def compute_loss(
        self, batch: dict[str, Tensor], label_smoothing: float = 0.0, z_loss: float = 0.0
    ) -> Tensor:
        """Mean token cross-entropy over labeled positions, plus ``z_loss`` times the mean
        of ``log(Z)^2`` over them (:func:`z_loss_term`) when ``z_loss`` is not 0."""
        return self._losses(batch, label_smoothing, z_loss)[0]

    def _losses(
        self, batch: dict[str, Tensor], label_smoothing: float, z_loss: float
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(loss, z-loss term or None, logits [N, V])``; the term is inside the loss."""
        logits = self(batch).flatten(0, 1).float()
        labels = batch["labels"].flatten()
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, label_smoothing=label_smoothing)
        if not z_loss:
            return loss, None, logits
        term = z_loss * z_loss_term(logits, labels != IGNORE)
        return loss + term, term, logits

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The loss the optimizer descends: cross-entropy with ``train.label_smoothing``,
        plus ``train.z_loss`` times the mean ``log(Z)^2`` when that is on.

        Every diagnostic that differentiates or evaluates a loss (noise scale,
        Hessian, landscape) measures this one, so their numbers describe training.
        """
        t = self.cfg.train
        return self.compute_loss(batch, t.label_smoothing, t.z_loss)

    @property
    def training_loss_name(self) -> str:
        """What :meth:`training_loss` computes, recorded next to each diagnostic's numbers."""
        t = self.cfg.train
        name = f"cross_entropy(label_smoothing={t.label_smoothing:g})"
        return f"{name} + {t.z_loss:g} * mean(log(Z)^2)" if t.z_loss else name

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        t = self.cfg.train
        loss, z_term, logits = self._losses(batch, t.label_smoothing, t.z_loss)
        if not torch.isfinite(loss):
            # Stop here: a NaN step would poison the weights and the checkpoint.
            self.diverged = True
            self.trainer.should_stop = True
        if not written_this_step(self.trainer):
            return loss  # Lightning would keep only the latest values; a log call costs ~0.2 ms
        if z_term is not None:
            self.log("train/z_loss", z_term)  # already inside train/loss
        with torch.no_grad():  # the softmax normalizer z-loss pulls to 0 (Wortsman et al.)
            rms = z_loss_term(logits, batch["labels"].flatten() != IGNORE).sqrt()
            self.log("train/log_z_rms", rms)
        self.log("train/loss", loss, prog_bar=True)
        opt = self.optimizers()
        self.log("lr", (opt[0] if isinstance(opt, list) else opt).param_groups[0]["lr"])
        return loss

    def validation_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        logits = self(batch)
        labels = batch["labels"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
        trivial = batch.get("trivial")
        m = token_metrics(logits, labels, trivial)
        suffix, length = self.val_sets[dataloader_idx]
        values = {"loss": loss, "acc": m["acc"]}
        if self._has_exact_match:
            values["exact_match"] = m["exact_match"]
        weights = {"exact_match": m["n_seqs"]}
        if m["n_nontrivial"] > 0:
            values["acc_nontrivial"] = m["acc_nontrivial"]
            values["pred_diversity"] = prediction_diversity(
                logits, nontrivial_mask(labels, trivial)
            )
            weights.update(acc_nontrivial=m["n_nontrivial"], pred_diversity=m["n_nontrivial"])
        for key, value in values.items():
            n = int(weights.get(key, m["n_tokens"]))
            self.val_means.add(f"val/{key}{suffix}@{length}", value, n)
            if dataloader_idx == 0:
                self.val_means.add(f"val/{key}", value, n)

    def on_validation_epoch_end(self) -> None:
        # One log call a key per validation, not one a key and batch (each costs ~0.2 ms);
        # the value is the same weighted mean Lightning's per-batch logging computed.
        for key, value in self.val_means.take().items():
            self.log(key, value, prog_bar=key == "val/loss", add_dataloader_idx=False, batch_size=1)

    @property
    def _has_exact_match(self) -> bool:
        dm = getattr(self.trainer, "datamodule", None)
        return "exact_match" in getattr(dm, "metrics", ("acc", "exact_match"))

    def on_validation_start(self) -> None:
        self.val_means = WeightedMeans()  # a validation cut short leaves nothing behind
        # Validation is deterministic but iterating its loaders draws from the global
        # RNG; keep it neutral so training (dropout) sees the same numbers whether or
        # not a run was stopped and resumed around a validation.
        self._rng_before_val = torch.get_rng_state()

    def on_validation_end(self) -> None:
        torch.set_rng_state(self._rng_before_val)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Dropout draws from the global RNG; a resumed run must draw the same numbers.
        checkpoint["rng_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["rng_cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_cpu" in checkpoint:
            torch.set_rng_state(checkpoint["rng_cpu"])
        if "rng_cuda" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng_cuda"])

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.model, self.cfg.train)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
