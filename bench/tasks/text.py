"""Byte-level language modelling on local text.

Corpus, in order of preference:

* ``task.hf_dataset`` ("name" or "name:config"): a Hugging Face dataset already
  in the local cache, loaded with ``HF_DATASETS_OFFLINE=1`` (needs ``datasets``,
  the ``data`` extra; nothing is downloaded). Each record of its text column is one
  document.
* ``task.paths``: local files and folders (folders are read recursively,
  skipping hidden entries and ``__pycache__``); each file is one document.
* default: the ``*.py`` sources of the running Python's standard library
  (``sysconfig.get_paths()["stdlib"]``), skipping ``site-packages`` and test
  directories.

Documents are read in sorted order until ``task.max_bytes`` bytes. Every 10th
document (index 0, 10, 20, ...) is validation, the rest training, so no file
is in both; a single document is split by bytes instead (last 10% validation).

Tokens: byte ``b`` is id ``b + N_SPECIAL`` (vocabulary 260; specials unused).
Training windows have ``seq_len + 1`` bytes at ``n_train`` start positions
drawn from the seeded train stream.

Validation: the same text at every eval length. ``n_val`` *spans* of ``S + 1``
bytes are drawn from the seeded validation stream (they may overlap), ``S`` the
least common multiple of the eval lengths (``4 L`` for scales ``[1, 2, 4]``).
The length-``L'`` set cuts every span into ``S / L'`` non-overlapping windows of
``L' + 1`` bytes, every position labelled, so every eval length scores the same
``n_val * S`` bytes: a difference between lengths is the model's, not the
text's. This is Press et al.'s (2022) non-overlapping evaluation: the first
bytes of each window have little context (the "early-token curse" their App. B
describes), and fewer of them are scored at longer ``L'``. (Before this
protocol each length drew its own ``n_val`` windows; numbers of text runs made
before it are not comparable with later ones.)

With ``task.sliding_eval`` a second set per eval length ``L'`` (metric keys
``val/loss_sw@L'``, ``val/acc_sw@L'``) holds one window of ``L'`` tokens per span
ending at the span's end, of which only the last ``seq_len`` positions are
scored: the same last ``seq_len`` bytes of every span at every ``L'``, each with
at least ``L' - seq_len`` bytes of context (at ``L' = seq_len``: the span's last
non-overlapping window). It is Press et al.'s sliding-window evaluation (App. B,
stride ``seq_len`` instead of 1, and its last stride only, so it costs one
window a span): it separates "more context" from "fewer early tokens". A model
that uses no context beyond ``seq_len`` scores the same at every ``L' >= 2
seq_len``.

``unigram_entropy`` is the cross-entropy (nats/byte) of the validation bytes
under the training byte frequencies with add-one smoothing over the 256 bytes:
the loss a model reaches by learning only byte frequencies. It is the task's
chance ``val/loss`` (:meth:`TextTask.baseline`); chance accuracy is that
model's: the share of validation bytes equal to the most frequent training
byte. No position is trivially predictable and there is no exact match.
"""

from __future__ import annotations

import math
import os
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.extras import TEXT_INSTEAD, require
from bench.tasks.base import BenchDataModule, rng_for
from bench.tasks.baseline import Baseline, Chance, baseline_from_lengths
from bench.tasks.vocab import IGNORE, N_SPECIAL, Example

VAL_EVERY = 10  # every 10th document is validation
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_files() -> list[Path]:
    """The standard library's ``*.py`` files, sorted, without tests and site-packages."""
    root = sysconfig.get_paths()["stdlib"]
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]  # prune: site-packages is large
        files.extend(Path(folder, n) for n in names if n.endswith(".py"))
    return sorted(files)


def local_files(paths: Iterable[str]) -> list[Path]:
    """Files named by ``task.paths``, folders expanded recursively, in sorted order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and not any(
                        part.startswith(".") or part == "__pycache__"
                        for part in f.relative_to(p).parts
                    )
                )
            )
        else:
            raise ConfigError(f"task.paths: {raw!r} does not exist; allowed: files or folders")
    return out


def read_files(files: Iterable[Path], max_bytes: int) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in order, stopping once ``max_bytes`` are read."""
    docs: list[tuple[str, bytes]] = []
    left = max_bytes
    for f in files:
        if left <= 0:
            break
        data = f.read_bytes()[:left]
        left -= len(data)
        if data:
            docs.append((str(f), data))
    return docs


def hf_documents(name: str, max_bytes: int) -> list[tuple[str, bytes]]:
    """Records of a cached Hugging Face dataset's text column, loaded offline."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # read before `datasets` is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    datasets = require("datasets", f"task.hf_dataset={name!r}", TEXT_INSTEAD)
    path, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(path, config or None, split="train")
    except Exception as e:  # offline misses surface as several exception types
        raise ConfigError(
            f"task.hf_dataset={name!r} is not in the local Hugging Face cache "
            f"({type(e).__name__}); allowed: a dataset downloaded beforehand"
        ) from None
    column = next((c for c, f in ds.features.items() if getattr(f, "dtype", "") == "string"), None)
    if column is None:
        raise ConfigError(f"task.hf_dataset={name!r} has no text column")
    docs: list[tuple[str, bytes]] = []
    left = max_bytes
    for i, text in enumerate(ds[column]):
        if left <= 0:
            break
        data = text.encode()[:left]
        left -= len(data)
        if data:
            docs.append((f"{name}[{i}]", data))
    return docs


def split_documents(
    docs: list[tuple[str, bytes]],
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Train and validation byte streams and their document names (split by document)."""
    if len(docs) == 1:
        name, data = docs[0]
        cut = len(data) - len(data) // VAL_EVERY
        return _bytes([data[:cut]]), _bytes([data[cut:]]), [name], [name]
    val = [d for i, d in enumerate(docs) if i % VAL_EVERY == 0]
    train = [d for i, d in enumerate(docs) if i % VAL_EVERY != 0]
    return (
        _bytes([d for _, d in train]),
        _bytes([d for _, d in val]),
        [n for n, _ in train],
        [n for n, _ in val],
    )


def _bytes(parts: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy()


def unigram_cross_entropy(train: np.ndarray, val: np.ndarray) -> float:
    """Nats/byte of ``val`` under add-one-smoothed byte frequencies of ``train``."""
    counts = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val].mean())


def unigram_accuracy(train: np.ndarray, val: np.ndarray) -> float:
    """Share of ``val`` bytes equal to the most frequent byte of ``train``."""
    top = int(np.bincount(train, minlength=256).argmax())
    return float((val == top).mean())


class WindowDataset(Dataset[Example]):
    """Fixed-length byte windows of a stream: ``input_ids`` and next-byte ``labels``.

    ``scored_from``: positions before it are not scored (label IGNORE); they are
    the context of the sliding-window evaluation.
    """

    def __init__(
        self, stream: np.ndarray, starts: np.ndarray, length: int, scored_from: int = 0
    ) -> None:
        self.stream = torch.from_numpy(stream)
        self.starts = [int(s) for s in starts]
        self.length = length  # tokens fed to the model (window = length + 1 bytes)
        self.scored_from = scored_from

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Example:
        s = self.starts[i]
        w = self.stream[s : s + self.length + 1].long() + N_SPECIAL
        labels = w[1:].clone()
        labels[: self.scored_from] = IGNORE
        return {"input_ids": w[:-1], "labels": labels}


def span_length(eval_lengths: Iterable[int]) -> int:
    """Bytes scored per validation span: the least common multiple of the eval lengths."""
    return math.lcm(*eval_lengths)


def nonoverlapping_starts(spans: np.ndarray, span: int, length: int) -> np.ndarray:
    """Starts of the ``span / length`` back-to-back windows of each span (span-major)."""
    return (spans[:, None] + np.arange(0, span, length)[None, :]).ravel()


def sliding_starts(spans: np.ndarray, span: int, length: int) -> np.ndarray:
    """Start of the one window of ``length`` tokens ending at each span's end."""
    return spans + span - length


class TextTask(BenchDataModule):
    """Byte-level LM; decoder only; accuracy is next-byte accuracy."""

    metrics = ("acc",)
    supported_archs = ("decoder",)

    def __init__(self, cfg: TaskConfig, arch: str) -> None:
        super().__init__(cfg, arch)
        if cfg.hf_dataset and cfg.paths:
            raise ConfigError(
                f"task.hf_dataset={cfg.hf_dataset!r} and task.paths={cfg.paths!r} are both set; "
                "allowed: one of them"
            )
        self.files = local_files(cfg.paths) if cfg.paths else None  # checks paths exist
        self.vocab_size = N_SPECIAL + 256
        self.max_positions = max(self.eval_lengths)
        self.train_positions = self.eval_lengths[0]
        self.train_sources: list[str] = []
        self.val_sources: list[str] = []
        self._entropy: float | None = None
        self._unigram_acc: float | None = None

    @property
    def unigram_entropy(self) -> float:
        """Validation bytes' cross-entropy under training byte frequencies (nats/byte)."""
        self.setup()
        assert self._entropy is not None
        return self._entropy

    def baseline(self) -> Baseline:
        entropy = self.unigram_entropy  # builds the data if needed
        assert self._unigram_acc is not None
        chance = Chance(entropy, self._unigram_acc, self._unigram_acc, None)
        return baseline_from_lengths(
            "the unigram model: training byte frequencies, add-one smoothed",
            "none",
            self.eval_lengths,
            dict.fromkeys(self.eval_lengths, chance),
            self.vocab_size,
        )

    def documents(self) -> list[tuple[str, bytes]]:
        """The corpus as ``(name, bytes)`` documents, capped at ``max_bytes``."""
        cfg = self.cfg
        if cfg.hf_dataset:
            docs = hf_documents(cfg.hf_dataset, cfg.max_bytes)
        else:
            docs = read_files(self.files or stdlib_files(), cfg.max_bytes)
        if not docs:
            if cfg.hf_dataset:
                where = f"task.hf_dataset={cfg.hf_dataset!r}"
            else:  # [] means the standard library
                where = f"task.paths={cfg.paths!r}"
            raise ConfigError(f"{where}: the corpus is empty (no bytes); allowed: non-empty text")
        return docs

    def build(self) -> tuple[Dataset[Example], list[Dataset[Example]]]:
        cfg = self.cfg
        train, val, self.train_sources, self.val_sources = split_documents(self.documents())
        span = span_length(self.eval_lengths)
        for split, stream, length in (
            ("training", train, cfg.seq_len),
            ("validation", val, span),
        ):
            if len(stream) < length + 1:
                raise ConfigError(
                    f"task.max_bytes={cfg.max_bytes}: the {split} text has {len(stream)} bytes, "
                    f"fewer than one window of {length + 1}; allowed: more text or a smaller "
                    "task.seq_len"
                )
        self._entropy = unigram_cross_entropy(train, val)
        self._unigram_acc = unigram_accuracy(train, val)
        train_starts = rng_for(cfg.seed, 0).integers(0, len(train) - cfg.seq_len, cfg.n_train)
        spans = rng_for(cfg.seed, 1).integers(0, len(val) - span, cfg.n_val)
        vals: list[Dataset[Example]] = [
            WindowDataset(val, nonoverlapping_starts(spans, span, n), n) for n in self.eval_lengths
        ]
        if cfg.sliding_eval:
            vals += [
                WindowDataset(val, sliding_starts(spans, span, n), n, n - cfg.seq_len)
                for n in self.eval_lengths
            ]
        return WindowDataset(train, train_starts, cfg.seq_len), vals
