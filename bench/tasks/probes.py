"""Synthetic probes: copy, reverse, sort, associative recall, modular addition.

Each problem has a size ``n`` (``task.seq_len`` for training, ``seq_len*scale``
for each eval tier) and is a ``(prompt, answer)`` pair of token rows; see
:mod:`bench.tasks.vocab` for how the pair becomes a decoder or encoder-decoder
example. Symbols are ids ``N_SPECIAL + k``.

* copy: ``n`` symbols drawn from ``task.n_symbols``; answer = prompt.
* reverse: answer = the prompt reversed.
* sort: answer = the prompt sorted ascending (symbols repeat).
* recall: ``n`` pairs ``k1 v1 ... kn vn`` then a query key ``q``; answer = the
  value paired with ``q``. Keys are distinct and drawn from the first
  ``n_symbols`` symbols, values from a second, disjoint ``n_symbols`` block, so
  the roles are unambiguous without separators. Needs ``n_symbols >= n`` at the
  longest eval tier. Vocabulary: specials + ``2 * n_symbols``.
* modadd: ``n`` terms ``x_i`` in ``[0, modulus)``; the answer is the running
  sum ``s_i = (x_1 + ... + x_i) mod modulus`` for every ``i``, whose last token
  is the whole sequence-sum mod ``modulus``. Each answer token is one table
  lookup (``s_i = s_{i-1} + x_i``) of the previous answer token and the aligned
  term, which a two-layer model learns in a few hundred steps at small
  ``seq_len`` and ``modulus``; predicting the bare sum of ``n`` terms in one
  token is not learnable that quickly. Vocabulary: specials + ``modulus``
  (``n_symbols`` is unused).

Chance (:meth:`ProbeTask.baseline`): every answer has a fixed length, so its end
token is trivially predictable; each other answer position is uniform over the
tokens that can occur there (the ``n_symbols`` symbols; recall's ``n_symbols``
values; modadd's ``modulus`` residues).
"""

from __future__ import annotations

import abc

import numpy as np
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.tasks.base import BenchDataModule, ExampleDataset, is_heldout, rng_for
from bench.tasks.baseline import Baseline, baseline_from_lengths, uniform_answer
from bench.tasks.vocab import ENCODERS, EOS, N_SPECIAL, Example

Rows = tuple[np.ndarray, np.ndarray]  # prompts [count, P], answers [count, A] (token ids)

_MAX_ROUNDS = 20  # rejection rounds before a space is declared too small


class ProbeTask(BenchDataModule):
    """A prompt/answer probe; subclasses define the problem and its sizes."""

    trivial_labels = (EOS,)  # every answer of a size has one length: its end is known
    answer_word = "symbols"  # what the answer tokens are, for the baseline's description

    def __init__(self, cfg: TaskConfig, arch: str) -> None:
        super().__init__(cfg, arch)
        self.check(cfg)
        self.vocab_size = N_SPECIAL + self.alphabet(cfg)
        self.max_positions = self._positions(max(self.eval_lengths), arch)
        self.train_positions = self._positions(self.eval_lengths[0], arch)

    def _positions(self, n: int, arch: str) -> int:
        """The longest sequence the model sees for length ``n``: prompt, separator, answer."""
        p, a = self.prompt_len(n), self.answer_len(n)
        return p + 1 + a if arch == "decoder" else max(p, a + 1)

    # -- the problem ---------------------------------------------------------------

    def check(self, cfg: TaskConfig) -> None:
        """Raise ConfigError for settings this probe cannot use."""

    def alphabet(self, cfg: TaskConfig) -> int:
        """Number of task symbols (vocabulary without specials)."""
        return cfg.n_symbols

    def prompt_len(self, n: int) -> int:
        return n

    def answer_len(self, n: int) -> int:
        return n

    def answer_alphabet(self, cfg: TaskConfig) -> int:
        """How many tokens can occur at each answer position."""
        return self.alphabet(cfg)

    def baseline(self) -> Baseline:
        k = self.answer_alphabet(self.cfg)
        return baseline_from_lengths(
            f"uniform over the {k} {self.answer_word} at each answer position, end token known",
            "the end token",
            self.eval_lengths,
            {n: uniform_answer(self.answer_len(n), k) for n in self.eval_lengths},
            self.vocab_size,
        )

    @abc.abstractmethod
    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        """``count`` random problems of size ``n`` as token-id rows."""

    # -- splits --------------------------------------------------------------------

    def build(self) -> tuple[Dataset[Example], list[Dataset[Example]]]:
        cfg = self.cfg
        train = self._draw(rng_for(cfg.seed, 0), cfg.seq_len, cfg.n_train, heldout=False)
        vals = [
            # Tier 0 has the training size: only held-out problems (see base.py).
            self._draw(rng_for(cfg.seed, 1, i), n, cfg.n_val, heldout=True if i == 0 else None)
            for i, n in enumerate(self.eval_lengths)
        ]
        return self._dataset(train), [self._dataset(v) for v in vals]

    def _dataset(self, rows: Rows) -> ExampleDataset:
        encode = ENCODERS[self.arch]
        return ExampleDataset([encode(p.tolist(), a.tolist()) for p, a in zip(*rows, strict=True)])

    def _draw(self, rng: np.random.Generator, n: int, count: int, heldout: bool | None) -> Rows:
        """``count`` problems, filtered to (not) held-out ones unless ``heldout`` is None."""
        if heldout is None:
            return self.generate(rng, n, count)
        prompts, answers, have = [], [], 0
        for _ in range(_MAX_ROUNDS):
            need = count - have
            if need <= 0:
                break
            # Held-out problems are ~1/10 of draws; overdraw so one round usually suffices.
            p, a = self.generate(rng, n, need * (12 if heldout else 2) + 16)
            keep = np.array([is_heldout(row.tobytes(), self.cfg.seed) == heldout for row in p])
            prompts.append(p[keep])
            answers.append(a[keep])
            have += int(keep.sum())
        if have < count:
            split = "validation" if heldout else "training"
            raise ConfigError(
                f"task.seq_len={self.cfg.seq_len}: too few distinct {self.cfg.name} problems "
                f"of size {n} to hold a disjoint {split} set; allowed: a larger task.seq_len, "
                "task.n_symbols or task.modulus"
            )
        return np.concatenate(prompts)[:count], np.concatenate(answers)[:count]


def _symbols(rng: np.random.Generator, cfg: TaskConfig, n: int, count: int) -> np.ndarray:
    return rng.integers(0, cfg.n_symbols, (count, n), dtype=np.int64) + N_SPECIAL


class CopyTask(ProbeTask):
    """Answer = the prompt."""

    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        prompts = _symbols(rng, self.cfg, n, count)
        return prompts, prompts.copy()


class ReverseTask(ProbeTask):
    """Answer = the prompt reversed."""

    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        prompts = _symbols(rng, self.cfg, n, count)
        return prompts, np.ascontiguousarray(prompts[:, ::-1])


class SortTask(ProbeTask):
    """Answer = the prompt sorted ascending."""

    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        prompts = _symbols(rng, self.cfg, n, count)
        return prompts, np.sort(prompts, axis=1)


class RecallTask(ProbeTask):
    """``k1 v1 ... kn vn q`` -> the value of key ``q`` (keys distinct)."""

    answer_word = "values"

    def check(self, cfg: TaskConfig) -> None:
        longest = max(self.eval_lengths)
        if cfg.n_symbols < longest:
            raise ConfigError(
                f"task.n_symbols={cfg.n_symbols} is too small for recall with {longest} "
                f"distinct keys (task.seq_len={cfg.seq_len} x eval scale "
                f"{cfg.eval_scales[-1]}); allowed: n_symbols >= {longest}"
            )

    def alphabet(self, cfg: TaskConfig) -> int:
        return 2 * cfg.n_symbols  # keys, then values

    def answer_alphabet(self, cfg: TaskConfig) -> int:
        return cfg.n_symbols  # the answer is a value

    def prompt_len(self, n: int) -> int:
        return 2 * n + 1

    def answer_len(self, n: int) -> int:
        return 1

    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        k = self.cfg.n_symbols
        keys = rng.permuted(np.tile(np.arange(k, dtype=np.int64), (count, 1)), axis=1)[:, :n]
        values = rng.integers(0, k, (count, n), dtype=np.int64) + k
        prompts = np.empty((count, 2 * n + 1), dtype=np.int64)
        prompts[:, 0 : 2 * n : 2] = keys
        prompts[:, 1 : 2 * n : 2] = values
        rows = np.arange(count)
        which = rng.integers(0, n, count)
        prompts[:, -1] = keys[rows, which]
        answers = values[rows, which][:, None]
        return prompts + N_SPECIAL, answers + N_SPECIAL


class ModAddTask(ProbeTask):
    """Running sums mod ``modulus`` of ``n`` terms (the last is the full sum)."""

    answer_word = "residues"

    def alphabet(self, cfg: TaskConfig) -> int:
        return cfg.modulus

    def generate(self, rng: np.random.Generator, n: int, count: int) -> Rows:
        terms = rng.integers(0, self.cfg.modulus, (count, n), dtype=np.int64)
        sums = np.cumsum(terms, axis=1) % self.cfg.modulus
        return terms + N_SPECIAL, sums + N_SPECIAL
