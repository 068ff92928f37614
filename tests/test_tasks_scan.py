"""Specification of the SCAN-style task: the interpreter, the grammar and the length split."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError, TaskConfig
from bench.tasks import EOS, IGNORE, SEP, build_datamodule
from bench.tasks.scan import (
    TOKEN_IDS,
    TOKENS,
    all_commands,
    decode_ids,
    interpret,
)

L, R, W, J, LK, RN = "I_TURN_LEFT", "I_TURN_RIGHT", "I_WALK", "I_JUMP", "I_LOOK", "I_RUN"

KNOWN = {
    "jump": [J],
    "turn left": [L],
    "walk left": [L, W],
    "jump twice after walk left": [L, W, J, J],
    "look opposite right thrice": [R, R, LK] * 3,
    "walk around left": [L, W] * 4,
    "turn around right": [R] * 4,
    "turn opposite left twice": [L, L] * 2,
    "run and look right": [RN, R, LK],
    "jump opposite left after walk around left": [L, W] * 4 + [L, L, J],
    "jump around left thrice and walk around right thrice": [L, J] * 12 + [R, W] * 12,
}


@pytest.mark.parametrize(("command", "actions"), KNOWN.items())
def test_interpreter_matches_known_scan_examples(command: str, actions: list[str]):
    assert interpret(command) == actions


@pytest.mark.parametrize(
    "command",
    ["", "turn", "walk opposite", "left walk", "walk twice twice", "walk and run and jump"],
)
def test_interpreter_rejects_strings_outside_the_grammar(command: str):
    with pytest.raises(ValueError, match="not a SCAN command"):
        interpret(command)


def test_grammar_yields_the_20910_scan_commands_with_up_to_48_actions():
    commands = all_commands()
    assert len(commands) == 20910
    assert len({c for c, _ in commands}) == 20910
    assert max(len(a) for _, a in commands) == 48
    assert min(len(a) for _, a in commands) == 1
    assert all(interpret(c) == list(a) for c, a in commands[::7])


def scan_cfg(**kw: object) -> TaskConfig:
    base = {"name": "scan", "seq_len": 8, "n_train": 256, "n_val": 64, "batch_size": 64}
    return TaskConfig(**(base | kw))


def decoded(batch: dict[str, torch.Tensor]) -> list[tuple[str, list[str]]]:
    """(command, actions) of each row of a batch of either architecture."""
    out = []
    for i in range(batch["labels"].shape[0]):
        labels = batch["labels"][i]
        answer = labels[labels != IGNORE].tolist()
        assert answer[-1] == EOS
        if "src" in batch:
            src = batch["src"][i][~batch["src_pad"][i]].tolist()
        else:
            start = int((labels != IGNORE).nonzero()[0])
            src = batch["input_ids"][i][:start].tolist()
            assert int(batch["input_ids"][i][start]) == SEP
        out.append((" ".join(decode_ids(src)), decode_ids(answer[:-1])))
    return out


@pytest.mark.parametrize("arch", ["decoder", "encoder_decoder"])
def test_batches_decode_to_commands_and_their_interpretations(arch: str):
    dm = build_datamodule(scan_cfg(), arch)
    assert dm.vocab_size == 4 + len(TOKENS) == 23
    for loader in [dm.train_dataloader(), *dm.val_dataloader()]:
        for batch in loader:
            for command, actions in decoded(batch):
                assert interpret(command) == actions


@pytest.mark.parametrize("arch", ["decoder", "encoder_decoder"])
def test_length_split_trains_short_and_evaluates_on_longer_action_bands(arch: str):
    dm = build_datamodule(scan_cfg(eval_scales=[1, 2, 4]), arch)
    assert dm.eval_lengths == [8, 16, 32]
    assert dm.metrics == ("acc", "exact_match")
    train_lengths = [len(a) for b in dm.train_dataloader() for _, a in decoded(b)]
    assert max(train_lengths) <= 8
    bands = [(1, 8), (9, 16), (17, 32)]
    longest = 0
    for (lo, hi), loader in zip(bands, dm.val_dataloader(), strict=True):
        lengths = [len(a) for b in loader for _, a in decoded(b)]
        assert len(lengths) == 64
        assert lo <= min(lengths) and max(lengths) <= hi
        for b in loader:
            keys = ("input_ids",) if arch == "decoder" else ("src", "labels")
            longest = max(longest, *(b[k].shape[1] for k in keys))
    assert max(train_lengths) < min(len(a) for b in dm.val_dataloader()[1] for _, a in decoded(b))
    assert longest <= dm.max_positions


def test_batches_of_mixed_lengths_are_right_padded():
    dm = build_datamodule(scan_cfg(), "decoder")
    batch = next(iter(dm.val_dataloader()[1]))
    padded = batch["labels"] == IGNORE
    lengths = (batch["input_ids"] != 0).sum(1)
    assert lengths.min() < lengths.max()  # the band mixes lengths
    for row, n in zip(padded, lengths.tolist(), strict=True):
        assert row[n:].all()  # nothing labelled after the padding starts


def test_training_never_contains_a_validation_command_of_the_training_band():
    dm = build_datamodule(scan_cfg(seq_len=4, n_train=2048), "encoder_decoder")
    dm.setup()
    train = {tuple(ex["src"].tolist()) for ex in dm.train_dataset}
    val = {tuple(ex["src"].tolist()) for ex in dm.val_datasets[0]}
    assert val and not train & val


def test_token_ids_are_unique_and_follow_the_specials():
    assert sorted(TOKEN_IDS.values()) == list(range(4, 4 + len(TOKENS)))


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"seq_len": 32, "eval_scales": [1, 2, 4]}, "task.eval_scales"),  # 65..128: none
        ({"seq_len": 1}, "task.seq_len"),  # 6 one-action commands cannot be split
    ],
)
def test_impossible_length_splits_raise_a_config_error(kw: dict[str, object], key: str):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_datamodule(scan_cfg(**kw), "decoder")
