"""SCAN-style command -> action translation, generated from the SCAN grammar.

Grammar (Lake & Baroni 2018), with ``x`` a primitive or ``turn``::

    C -> S | S and S | S after S
    S -> V | V twice | V thrice
    V -> U | D | x opposite dir | x around dir
    D -> U dir | turn dir            dir in {left, right}
    U -> walk | look | run | jump

Semantics: ``U`` is its action (``I_WALK`` ...), ``x dir`` turns then acts,
``x opposite dir`` turns twice then acts, ``x around dir`` does (turn, act) four
times, ``twice``/``thrice`` repeat, ``a and b`` is ``a`` then ``b`` and
``a after b`` is ``b`` then ``a``. The grammar yields exactly 20,910 commands,
with action sequences of 1 to 48 tokens.

Length split: the tiers are bands of action-sequence length. With
``L = task.seq_len`` and scales ``s_0=1 < s_1 < ...``, tier 0 (training and the
in-distribution validation) holds commands with ``1 <= len(actions) <= L``;
tier ``i`` holds ``L*s_{i-1} < len(actions) <= L*s_i``. The eval length of a
tier is its upper bound ``L*s_i`` (nominal: no action sequence exceeds 48, so
a band reaching past 48 is cut there; an empty band is a ConfigError). Within
tier 0, validation commands are the held-out ones (see :mod:`bench.tasks.base`),
so training never sees a validation command; commands are drawn uniformly from
each pool. The original SCAN length split is ``seq_len=22`` with longer actions
as the test set.

Both sides share one word vocabulary (:data:`TOKENS`, ids from ``N_SPECIAL``):
the decoder reads ``command SEP actions EOS``, the encoder-decoder maps the
command (source) to the actions (target).

Chance (:meth:`ScanTask.baseline`): an answer's length depends on its command,
so no position is trivially predictable; a predictor that knows the output
format is uniform over the 6 actions and the end token at every answer
position (loss ``ln 7``), and its exact match is the mean of ``7**-(len+1)``
over the tier's commands.
"""

from __future__ import annotations

import functools
import math

from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.tasks.base import BenchDataModule, ExampleDataset, is_heldout, rng_for
from bench.tasks.baseline import Baseline, Chance, baseline_from_lengths
from bench.tasks.vocab import ENCODERS, N_SPECIAL, Example

PRIMITIVES = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
REPEATS = {"twice": 2, "thrice": 3}
CONJUNCTIONS = ("and", "after")
COMMAND_WORDS = (*PRIMITIVES, "turn", *TURNS, "opposite", "around", *REPEATS, *CONJUNCTIONS)
ACTIONS = (*PRIMITIVES.values(), *TURNS.values())
TOKENS = COMMAND_WORDS + ACTIONS
TOKEN_IDS = {w: N_SPECIAL + i for i, w in enumerate(TOKENS)}
MAX_ACTIONS = 48  # the longest action sequence the grammar produces


def interpret(command: str) -> list[str]:
    """The action sequence of a SCAN command; ValueError if it is not one."""
    words = command.split()
    for conj in CONJUNCTIONS:
        if conj in words:
            i = words.index(conj)
            first, second = _phrase(words[:i], command), _phrase(words[i + 1 :], command)
            return first + second if conj == "and" else second + first
    return _phrase(words, command)


def _phrase(words: list[str], command: str) -> list[str]:
    """S -> V [twice|thrice]."""
    if words and words[-1] in REPEATS:
        return _verb(words[:-1], command) * REPEATS[words[-1]]
    return _verb(words, command)


def _verb(words: list[str], command: str) -> list[str]:
    """V: a primitive, ``x dir``, ``x opposite dir`` or ``x around dir``."""
    match words:
        case [u] if u in PRIMITIVES:
            return [PRIMITIVES[u]]
        case [x, d] if _actor(x) and d in TURNS:
            return [TURNS[d], *_act(x)]
        case [x, "opposite", d] if _actor(x) and d in TURNS:
            return [TURNS[d], TURNS[d], *_act(x)]
        case [x, "around", d] if _actor(x) and d in TURNS:
            return [TURNS[d], *_act(x)] * 4
    raise ValueError(f"not a SCAN command: {command!r}")


def _actor(word: str) -> bool:
    return word in PRIMITIVES or word == "turn"


def _act(word: str) -> list[str]:
    return [] if word == "turn" else [PRIMITIVES[word]]


@functools.cache
def all_commands() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every command of the grammar with its actions, in a fixed order."""
    actors = (*PRIMITIVES, "turn")
    verbs = [
        *PRIMITIVES,
        *(f"{x} {d}" for x in actors for d in TURNS),
        *(f"{x} {m} {d}" for x in actors for m in ("opposite", "around") for d in TURNS),
    ]
    phrases = [(p, tuple(interpret(p))) for v in verbs for p in (v, f"{v} twice", f"{v} thrice")]
    out = list(phrases)
    for a, act_a in phrases:
        for b, act_b in phrases:
            out.append((f"{a} and {b}", act_a + act_b))
            out.append((f"{a} after {b}", act_b + act_a))
    return tuple(out)


def action_bands(seq_len: int, scales: list[int]) -> list[tuple[int, int]]:
    """Inclusive action-length bands, one per eval tier (see the module docstring)."""
    bounds = [0] + [seq_len * s for s in scales]
    return [(1 if i == 0 else bounds[i] + 1, bounds[i + 1]) for i in range(len(scales))]


def encode_words(text: str) -> list[int]:
    """Token ids of a space-separated command or action string."""
    return [TOKEN_IDS[w] for w in text.split()]


def decode_ids(ids: list[int]) -> list[str]:
    """Words of task token ids (specials and padding are dropped)."""
    return [TOKENS[i - N_SPECIAL] for i in ids if i >= N_SPECIAL]


class ScanTask(BenchDataModule):
    """SCAN with a length split by action-sequence length."""

    def __init__(self, cfg: TaskConfig, arch: str) -> None:
        super().__init__(cfg, arch)
        self.vocab_size = N_SPECIAL + len(TOKENS)
        self.bands = action_bands(cfg.seq_len, cfg.eval_scales)
        commands = all_commands()
        pools = [[c for c in commands if lo <= len(c[1]) <= hi] for lo, hi in self.bands]
        for (lo, hi), pool in zip(self.bands, pools, strict=True):
            if not pool:
                raise ConfigError(
                    f"task.eval_scales={cfg.eval_scales} with task.seq_len={cfg.seq_len}: no "
                    f"SCAN command has {lo}..{hi} actions (the longest has {MAX_ACTIONS}); "
                    "allowed: bands within 1..48"
                )
        first = pools[0]
        self.train_pool = [c for c in first if not is_heldout(c[0].encode(), cfg.seed)]
        self.val_pools = [[c for c in first if is_heldout(c[0].encode(), cfg.seed)], *pools[1:]]
        if not self.train_pool or not self.val_pools[0]:
            raise ConfigError(
                f"task.seq_len={cfg.seq_len}: only {len(first)} SCAN commands have at most "
                f"{cfg.seq_len} actions, too few to split into training and validation; "
                "allowed: a larger task.seq_len"
            )
        longest = [(len(c.split()), len(a)) for pool in pools for c, a in pool]
        trained = [(len(c.split()), len(a)) for c, a in self.train_pool]
        if arch == "decoder":
            self.max_positions = max(c + 1 + a for c, a in longest)
            self.train_positions = max(c + 1 + a for c, a in trained)
        else:
            self.max_positions = max(max(c, a + 1) for c, a in longest)
            self.train_positions = max(max(c, a + 1) for c, a in trained)

    def baseline(self) -> Baseline:
        k = len(ACTIONS) + 1  # an action or the end
        chances = {
            n: Chance(
                loss=math.log(k),
                acc=1 / k,
                acc_nontrivial=1 / k,
                exact_match=sum(float(k) ** -(len(a) + 1) for _, a in pool) / len(pool),
            )
            for n, pool in zip(self.eval_lengths, self.val_pools, strict=True)
        }
        return baseline_from_lengths(
            f"uniform over the {len(ACTIONS)} actions and the end token at each answer position",
            "none (answer lengths vary)",
            self.eval_lengths,
            chances,
            self.vocab_size,
        )

    def build(self) -> tuple[Dataset[Example], list[Dataset[Example]]]:
        cfg = self.cfg
        train = self._sample(self.train_pool, cfg.n_train, 0)
        vals: list[Dataset[Example]] = [
            self._sample(pool, cfg.n_val, 1, i) for i, pool in enumerate(self.val_pools)
        ]
        return train, vals

    def _sample(
        self, pool: list[tuple[str, tuple[str, ...]]], count: int, *stream: int
    ) -> ExampleDataset:
        """``count`` commands drawn uniformly (with replacement) from ``pool``."""
        picks = rng_for(self.cfg.seed, *stream).integers(0, len(pool), count)
        encode = ENCODERS[self.arch]
        return ExampleDataset(
            [encode(encode_words(pool[j][0]), [TOKEN_IDS[a] for a in pool[j][1]]) for j in picks]
        )
