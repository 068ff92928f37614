"""The task base class and the helpers every task uses.

A task is plain torch (no Lightning): checking a config against its data, as
``bench sweep`` does before it starts workers, loads no Lightning. Training
hands a task to Lightning through :class:`bench.training.trainer.RunData`.

Determinism: every split draws from its own numpy stream, seeded from
``(TaskConfig.seed, stream...)`` (train ``(seed, 0)``, validation tier ``i``
``(seed, 1, i)``), so the same seed gives identical data on any machine and a
different seed different data. The train loader shuffles with a
``torch.Generator`` seeded from the same seed.

Held-out problems: where a validation tier has the training problem size (the
first eval length), train and validation could draw the same problem from a
small space. Each problem (its prompt, or a SCAN command) is therefore hashed
together with the seed into one of :data:`HELDOUT_BUCKETS` buckets; bucket 0 is
validation-only and the training set never contains it. Longer tiers cannot
overlap the training set (different sizes), so they draw freely.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bench.config import ConfigError, TaskConfig
from bench.tasks.baseline import Baseline
from bench.tasks.vocab import Example, collate

ARCHS = ("decoder", "encoder_decoder")
SLIDING = "_sw"  # metric suffix of the text task's sliding-window evaluation (val/loss_sw@L)
HELDOUT_BUCKETS = 10  # 1 in 10 problems of the training size is validation-only


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """The numpy generator of one split: independent streams from one seed."""
    return np.random.default_rng([seed % 2**64, *stream])


def is_heldout(key: bytes, seed: int) -> bool:
    """Whether the problem identified by ``key`` belongs to validation only."""
    digest = hashlib.blake2b(key, digest_size=8, salt=(seed % 2**64).to_bytes(8, "little"))
    return int.from_bytes(digest.digest(), "little") % HELDOUT_BUCKETS == 0


class ExampleDataset(Dataset[Example]):
    """A list of pre-encoded examples (dicts of 1-D tensors)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


def check_arch(name: str, arch: str, supported: Sequence[str]) -> None:
    """ConfigError unless ``arch`` is one the task supports."""
    if arch not in ARCHS:
        raise ConfigError(f"model.arch={arch!r}: allowed: {', '.join(ARCHS)}")
    if arch not in supported:
        raise ConfigError(
            f"model.arch={arch!r} cannot run task.name={name!r}; allowed: {', '.join(supported)}"
        )


def val_sets(cfg: TaskConfig, eval_lengths: Sequence[int]) -> list[tuple[str, int]]:
    """``(metric suffix, length)`` of each validation loader, in loader order.

    The loaders of ``eval_lengths`` first (suffix ``""``: ``val/loss@L``), then, with
    ``task.sliding_eval``, the sliding-window loaders of the same lengths (suffix
    :data:`SLIDING`: ``val/loss_sw@L``; see :mod:`bench.tasks.text`).
    """
    tags = [("", n) for n in eval_lengths]
    if cfg.sliding_eval:
        tags += [(SLIDING, n) for n in eval_lengths]
    return tags


def check_eval_scales(scales: Sequence[int]) -> None:
    """Eval scales start at 1 (the training length) and strictly increase."""
    ok = len(scales) > 0 and scales[0] == 1 and all(b > a for a, b in itertools.pairwise(scales))
    if not ok:
        raise ConfigError(
            f"task.eval_scales={list(scales)!r}: allowed: strictly increasing integers "
            "starting at 1 (the training length), e.g. [1, 2, 4]"
        )


class BenchDataModule(abc.ABC):
    """A task's data: one training loader, one validation loader per eval length.

    The hooks have Lightning's DataModule names (``setup``, ``train_dataloader``,
    ``val_dataloader``); :class:`bench.training.trainer.RunData` adapts it.

    Attributes set at construction (before ``setup``), for assembling the model:
    ``vocab_size`` (with specials), ``eval_lengths`` (first = training length),
    ``max_positions`` (longest sequence any split feeds the model), ``train_positions``
    (longest training sequence: RoPE scaling's training length), ``metrics``.
    Data is built by ``setup()`` (idempotent, cheap, deterministic, offline).
    ``baseline()`` gives the chance level of every metric per eval length;
    batches mark the labels in ``trivial_labels`` in ``batch["trivial"]``.
    """

    metrics: tuple[str, ...] = ("acc", "exact_match")
    supported_archs: tuple[str, ...] = ARCHS
    trivial_labels: tuple[int, ...] = ()  # label ids a format-aware predictor always gets right

    def __init__(self, cfg: TaskConfig, arch: str) -> None:
        check_arch(cfg.name, arch, self.supported_archs)
        check_eval_scales(cfg.eval_scales)
        if cfg.name != "text" and (cfg.paths or cfg.hf_dataset):
            key = "task.paths" if cfg.paths else "task.hf_dataset"
            value = cfg.paths or cfg.hf_dataset
            raise ConfigError(f"{key}={value!r} is only read by task.name='text', not {cfg.name!r}")
        if cfg.name != "text" and cfg.sliding_eval:
            raise ConfigError(
                f"task.sliding_eval=True is only read by task.name='text', not {cfg.name!r}; "
                "allowed: false"
            )
        self.cfg = cfg
        self.arch = arch
        self.eval_lengths: list[int] = [cfg.seq_len * s for s in cfg.eval_scales]
        self.vocab_size: int = 0  # set by subclasses
        self.max_positions: int = 0  # set by subclasses
        self.train_positions: int = 0  # set by subclasses
        self.train_dataset: Dataset[Example] | None = None
        self.val_datasets: list[Dataset[Example]] = []

    @property
    def unigram_entropy(self) -> float | None:
        """Text only: the unigram baseline in nats/byte; None for other tasks."""
        return None

    @abc.abstractmethod
    def baseline(self) -> Baseline:
        """The chance level of each metric at each eval length (see :mod:`bench.tasks.baseline`)."""

    @abc.abstractmethod
    def build(self) -> tuple[Dataset[Example], list[Dataset[Example]]]:
        """The training set and one validation set per eval length."""

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets once (later calls are no-ops)."""
        if self.train_dataset is None:
            self.train_dataset, self.val_datasets = self.build()

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """Training batches, shuffled by a generator seeded from ``task.seed``."""
        self.setup()
        assert self.train_dataset is not None
        gen = torch.Generator().manual_seed(self.cfg.seed % 2**63)
        return self._loader(self.train_dataset, shuffle=True, generator=gen)

    def val_dataloader(self) -> list[DataLoader[dict[str, Tensor]]]:
        """One loader per validation set, in the order of :func:`val_sets`."""
        self.setup()
        return [self._loader(ds, shuffle=False) for ds in self.val_datasets]

    def _loader(
        self, ds: Dataset[Example], shuffle: bool, generator: torch.Generator | None = None
    ) -> DataLoader[dict[str, Tensor]]:
        workers = self.cfg.num_workers
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=functools.partial(collate, trivial_labels=self.trivial_labels),
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=False,
        )
