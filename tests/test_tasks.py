"""Specification of the task registry, token encoding and the synthetic probes."""

from __future__ import annotations

import typing

import pytest
import torch

from bench.config import ConfigError, TaskConfig, TaskName
from bench.tasks import BOS, EOS, IGNORE, N_SPECIAL, PAD, SEP, TASKS, build_datamodule
from bench.tasks.vocab import collate, encode_decoder, encode_encoder_decoder

PROBES = ("copy", "reverse", "sort", "recall", "modadd")
ARCHS = ("decoder", "encoder_decoder")


def probe_cfg(name: str, **kw: typing.Any) -> TaskConfig:
    """A small probe config (recall needs n_symbols >= its longest eval size)."""
    base = {"name": name, "seq_len": 6, "n_symbols": 24, "modulus": 7, "n_train": 64, "n_val": 16}
    base["batch_size"] = 8
    return TaskConfig(**(base | kw))


def problems(batch: dict[str, torch.Tensor]) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) token lists of a batch of either architecture (EOS checked, dropped)."""
    out = []
    for i in range(batch["labels"].shape[0]):
        labels = batch["labels"][i]
        if "src" in batch:
            prompt = batch["src"][i][~batch["src_pad"][i]].tolist()
            tgt_in = batch["tgt_in"][i][labels != IGNORE].tolist()
            answer = labels[labels != IGNORE].tolist()
            assert tgt_in == [BOS, *answer[:-1]]  # teacher forcing is the shifted target
        else:
            labelled = (labels != IGNORE).nonzero().flatten()
            start = int(labelled[0])
            prompt = batch["input_ids"][i][:start].tolist()
            assert int(batch["input_ids"][i][start]) == SEP
            answer = labels[labelled].tolist()
            # labels are the next input token over the answer (already shifted)
            assert batch["input_ids"][i][start + 1 : start + len(answer)].tolist() == answer[:-1]
        assert answer[-1] == EOS
        out.append((prompt, answer[:-1]))
    return out


# ----------------------------------------------------------------------------- API


def test_registry_has_a_datamodule_for_every_task_name_in_the_config():
    assert set(TASKS) == set(typing.get_args(TaskName))


def test_special_tokens_are_fixed_and_symbols_start_after_them():
    assert (PAD, BOS, EOS, SEP, N_SPECIAL, IGNORE) == (0, 1, 2, 3, 4, -100)


def test_decoder_encoding_shifts_labels_and_masks_the_prompt():
    ex = encode_decoder([5, 6], [7, 8])
    assert ex["input_ids"].tolist() == [5, 6, SEP, 7, 8]
    assert ex["labels"].tolist() == [IGNORE, IGNORE, 7, 8, EOS]


def test_encoder_decoder_encoding_has_bos_input_and_eos_target():
    ex = encode_encoder_decoder([5, 6, 9], [7])
    assert ex["src"].tolist() == [5, 6, 9]
    assert ex["tgt_in"].tolist() == [BOS, 7]
    assert ex["labels"].tolist() == [7, EOS]


def test_collate_pads_on_the_right_and_marks_source_padding():
    batch = collate([encode_encoder_decoder([5, 6, 7], [8]), encode_encoder_decoder([5], [8, 9])])
    assert batch["src"].tolist() == [[5, 6, 7], [5, PAD, PAD]]
    assert batch["src_pad"].tolist() == [[False, False, False], [False, True, True]]
    assert batch["tgt_in"].tolist() == [[BOS, 8, PAD], [BOS, 8, 9]]
    assert batch["labels"].tolist() == [[8, EOS, IGNORE], [8, 9, EOS]]
    assert batch["src_pad"].dtype == torch.bool and batch["src"].dtype == torch.long


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PROBES)
def test_probe_shapes_follow_the_eval_lengths(name: str, arch: str):
    dm = build_datamodule(probe_cfg(name), arch)
    assert dm.eval_lengths == [6, 12, 24]
    assert dm.metrics == ("acc", "exact_match") and dm.unigram_entropy is None
    vals = dm.val_dataloader()
    assert len(vals) == len(dm.eval_lengths)
    train = next(iter(dm.train_dataloader()))
    assert train["labels"].shape[0] == 8
    longest = 0
    for n, loader in zip(dm.eval_lengths, vals, strict=True):
        batch = next(iter(loader))
        prompt, answer = problems(batch)[0]
        size = len(prompt) // 2 if name == "recall" else len(prompt)  # recall: n pairs + query
        assert size == n
        assert len(answer) == (1 if name == "recall" else n)
        if arch == "decoder":
            assert batch["input_ids"].shape == batch["labels"].shape
            longest = max(longest, batch["input_ids"].shape[1])
        else:
            assert batch["src_pad"].shape == batch["src"].shape
            assert batch["tgt_in"].shape == batch["labels"].shape
            longest = max(longest, batch["src"].shape[1], batch["labels"].shape[1])
        for b in (batch, train):
            ids = torch.cat([v.flatten() for k, v in b.items() if k not in ("labels", "src_pad")])
            assert int(ids.max()) < dm.vocab_size
    assert dm.max_positions == longest


ANSWERS: dict[str, typing.Callable[[list[int], TaskConfig], list[int]]] = {
    "copy": lambda p, cfg: p,
    "reverse": lambda p, cfg: p[::-1],
    "sort": lambda p, cfg: sorted(p),
    "recall": lambda p, cfg: [p[p[:-1:2].index(p[-1]) * 2 + 1]],
    "modadd": lambda p, cfg: [
        sum(x - N_SPECIAL for x in p[: i + 1]) % cfg.modulus + N_SPECIAL for i in range(len(p))
    ],
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", PROBES)
def test_probe_answers_are_the_task_function_of_the_prompt(name: str, arch: str):
    cfg = probe_cfg(name)
    dm = build_datamodule(cfg, arch)
    loaders = [dm.train_dataloader(), *dm.val_dataloader()]
    checked = 0
    for loader in loaders:
        for batch in loader:
            for prompt, answer in problems(batch):
                assert min(prompt) >= N_SPECIAL
                assert answer == ANSWERS[name](prompt, cfg)
                checked += 1
    assert checked == cfg.n_train + cfg.n_val * len(dm.eval_lengths)


def test_recall_keys_are_distinct_and_values_use_their_own_symbols():
    cfg = probe_cfg("recall")
    dm = build_datamodule(cfg, "decoder")
    for prompt, answer in problems(next(iter(dm.val_dataloader()[2]))):
        keys, values = prompt[:-1:2], prompt[1:-1:2]
        assert len(set(keys)) == len(keys) == 24
        assert all(N_SPECIAL <= k < N_SPECIAL + cfg.n_symbols for k in [*keys, prompt[-1]])
        assert all(N_SPECIAL + cfg.n_symbols <= v < dm.vocab_size for v in [*values, *answer])


@pytest.mark.parametrize("name", ["copy", "recall", "scan"])
def test_same_seed_gives_identical_batches_and_another_seed_different(name: str):
    def first_batches(seed: int) -> list[dict[str, torch.Tensor]]:
        dm = build_datamodule(probe_cfg(name, seed=seed), "decoder")
        return [next(iter(dm.train_dataloader())), *(next(iter(v)) for v in dm.val_dataloader())]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    for x, y, z in zip(a, b, c, strict=True):
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x)
        assert not all(x[k].shape == z[k].shape and torch.equal(x[k], z[k]) for k in x)


def test_train_loader_shuffles_deterministically_and_val_loaders_do_not():
    dm = build_datamodule(probe_cfg("copy"), "decoder")
    first = torch.cat([b["input_ids"] for b in dm.train_dataloader()])
    again = torch.cat([b["input_ids"] for b in dm.train_dataloader()])
    assert torch.equal(first, again)
    stored = torch.stack([ex["input_ids"] for ex in dm.train_dataset])
    assert not torch.equal(first, stored)  # shuffled
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, stored.tolist()))
    val = torch.cat([b["input_ids"] for b in dm.val_dataloader()[0]])
    assert torch.equal(val, torch.stack([ex["input_ids"] for ex in dm.val_datasets[0]]))


def test_worker_processes_yield_the_same_batches_as_the_main_process():
    def batches(workers: int) -> list[torch.Tensor]:
        dm = build_datamodule(probe_cfg("reverse", num_workers=workers), "encoder_decoder")
        return [b["src"] for b in dm.train_dataloader()]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(1), strict=True))


def test_validation_at_the_training_length_never_repeats_a_training_problem():
    # 4**3 = 64 possible prompts: 512 training draws cover every one not held out.
    cfg = probe_cfg("copy", seq_len=3, n_symbols=4, n_train=512, n_val=32)
    dm = build_datamodule(cfg, "encoder_decoder")
    dm.setup()
    train = {tuple(ex["src"].tolist()) for ex in dm.train_dataset}
    val = {tuple(ex["src"].tolist()) for ex in dm.val_datasets[0]}
    assert val and train
    assert not train & val
    assert len(train | val) > 50  # both sides of the split are still used


def test_a_space_too_small_to_hold_out_validation_is_a_config_error():
    with pytest.raises(ConfigError, match=r"task\.seq_len"):
        build_datamodule(probe_cfg("copy", seq_len=1, n_symbols=2), "decoder").setup()


@pytest.mark.parametrize(
    ("cfg", "arch", "key"),
    [
        (probe_cfg("recall", n_symbols=20), "decoder", "task.n_symbols"),
        (probe_cfg("copy", eval_scales=[2, 4]), "decoder", "task.eval_scales"),
        (probe_cfg("copy", eval_scales=[1, 4, 2]), "decoder", "task.eval_scales"),
        (probe_cfg("copy", eval_scales=[]), "decoder", "task.eval_scales"),
        (probe_cfg("copy"), "encoder", "model.arch"),
        (probe_cfg("copy", paths=["x.txt"]), "decoder", "task.paths"),
        (probe_cfg("sort", hf_dataset="wikitext"), "decoder", "task.hf_dataset"),
    ],
)
def test_bad_settings_raise_a_config_error_naming_the_key(cfg: TaskConfig, arch: str, key: str):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        build_datamodule(cfg, arch)
    assert "\n" not in str(err.value)
