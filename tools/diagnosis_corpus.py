"""Generate the labelled corpus of runs that measures the diagnosis rules (issue 29, Build 1).

Every run is trained from a config written below (nothing hand-picked): a *plant* is a
configuration known from its paper to cause one failure, and names the rules that should
diagnose it; a *healthy* configuration (several tasks, sizes and inits, including copy,
reversal and recall, which need sharp attention) plants nothing. Each configuration runs
at every seed of a half (``train.seed`` = ``task.seed`` = the seed). The halves are fixed
by seed in ``HALVES``: the *tuning* half (thresholds and plants may be changed after
looking at it) and the *held-out* half (generated and evaluated only after the thresholds
were registered in docs/diagnoses.md, and never used to change them). ``--half held_out``
refuses to run from a working tree with uncommitted changes to ``bench/`` or this tool,
so the code that generated it is a commit, recorded in every row.

Labels are written to ``ROOT/labels.json`` as each run finishes, from the plant and from
the run's outcome alone (``summary.json``'s learning verdict, or diverged), before and
independently of any rule: a rule's *positives* are the runs where its cause was planted
and the run did not learn (or diverged). A planted run that learned anyway is kept with
its label (``outcome: learned``): the symptom gate must give it no diagnosis. Each row
records its configuration's digest; a row whose configuration has changed since is
trained again (``tools/diagnosis_eval.py`` refuses a corpus with stale rows).

Usage (single-threaded; 5-17 s of CPU a run, 48 runs a half):

    nice -n 10 python tools/diagnosis_corpus.py --root runs/diagnosis-corpus --half tune
    python tools/diagnosis_eval.py runs/diagnosis-corpus --half tune
    # after the thresholds are registered and committed:
    nice -n 10 python tools/diagnosis_corpus.py --root runs/diagnosis-corpus --half held_out
    python tools/diagnosis_eval.py runs/diagnosis-corpus --half held_out --measured

``--only NAME`` (re)generates some configurations, ``--seeds`` some seeds of the half;
runs already labelled with their current configuration are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The two halves, by seed. Seeds 2 and 3 were the held-out half of the first measurement
# (2026-12-07, thresholds never tuned) and have been looked at since, so they belong to
# the tuning half now; seeds 4-7 are the held-out half of the second measurement.
HALVES: dict[str, tuple[int, ...]] = {"tune": (0, 1, 2, 3), "held_out": (4, 5, 6, 7)}

# Every run: a tiny model on a small synthetic task, measured often enough for the rules
# (gradients/attention every 10 steps, the Hessian at the middle and the end), no
# per-run figures, landscapes, attention maps or throughput (the rules read none of them).
BASE: dict[str, Any] = {
    "task.name": "reverse",
    "task.seq_len": 6,
    "task.n_symbols": 12,
    "task.n_train": 2048,
    "task.n_val": 128,
    "task.eval_scales": [1],
    "task.batch_size": 32,
    "model.d_model": 32,
    "model.n_layers": 2,
    "model.n_heads": 4,
    "model.max_len": 32,
    "train.lr": 1e-2,
    "train.warmup_steps": 20,
    "train.max_steps": 140,
    "train.val_every": 10,
    "train.log_every": 5,
    "train.threads": 1,
    "train.checkpoint_every": 100_000,
    "train.progress_bar": False,
    "diagnostics.gradients_every": 10,
    "diagnostics.hessian.enabled": True,
    "diagnostics.hessian.steps": [0.5, 1.0],
    "diagnostics.hessian.iters": 5,
    "diagnostics.hessian.top_k": 1,
    "diagnostics.throughput": False,
    "diagnostics.attention_maps": False,
    "diagnostics.figures": False,
    "tracking.mode": "disabled",
}

# name -> (overrides, rules whose cause is planted, what is planted and why)
CONFIGS: dict[str, tuple[dict[str, Any], tuple[str, ...], str]] = {
    # ---------------------------------------------------------------- planted causes
    # At the quickstart's lr and warmup (issue 16), so that the small init is the one cause:
    # the first version added lr 3e-2 without warmup, whose runs formed attention within
    # 20 steps and then collapsed with growing logits (a second, high-lr cause).
    "post_ln_small_init": (
        {"model.norm_placement": "post", "model.init": "gpt2", "model.embed_scale": "none"},
        ("uniform_attention", "ill_conditioned_depth", "chance_plateau"),
        "post-LN, N(0, 0.02) weights and unscaled embeddings at the quickstart's lr and "
        "warmup (Xiong et al. 2020; issue 16)",
    ),
    # update_size is no longer named: the rule reads only too small an update (its
    # upper side did not tell lr 0.5 from the healthy runs on the tuning half)
    "lr_far_above": (
        {"train.lr": 0.5, "train.warmup_steps": 0, "train.grad_clip": None, "model.qk_norm": False},
        ("attention_logit_growth", "entropy_collapse", "loss_spikes", "sharpness_vs_lr"),
        "pre-LN at lr 0.5 (50x the quickstart's), no warmup, no clipping, no QK-norm "
        "(Wortsman et al. 2023; Zhai et al. 2023; Cohen et al. 2021)",
    ),
    # lr 1.0 and 64 symbols: at the first version's lr 0.2 (12 symbols) log Z moved by
    # less than 3 nats and the runs stalled near chance with none of the failures named;
    # at lr 1.0 QK-norm's gains grow too, so the attention logits are not held in place
    # (Wortsman et al. 2023, Fig. 1: QK-layernorm widens the stable range of learning
    # rates, not without limit) and the attention rules are named as well.
    "output_logits_high_lr": (
        {
            "train.lr": 1.0,
            "train.warmup_steps": 0,
            "train.weight_decay": 0.0,
            "train.grad_clip": None,
            "model.tie_embeddings": False,
            "model.qk_norm": True,
            "task.n_symbols": 64,
        },
        (
            "output_logit_divergence",
            "loss_spikes",
            "sharpness_vs_lr",
            "attention_logit_growth",
            "entropy_collapse",
        ),
        "lr 1.0 with no weight decay, no clipping, an untied output layer, no z-loss and 64 "
        "symbols (Wortsman et al. 2023, Sec. 3.2); QK-norm on",
    ),
    "batch_far_above_noise": (
        {
            "task.batch_size": 256,
            "train.max_steps": 20,
            "train.warmup_steps": 2,
            "train.val_every": 2,
            "train.log_every": 1,
            "diagnostics.gradients_every": 2,
        },
        ("batch_vs_noise_scale",),
        "batch 256 (the quickstart's noise scale is 4-68) for 20 steps: the examples of "
        "160 steps at batch 32 (McCandlish et al. 2018)",
    ),
    "cannot_learn": (
        {
            "task.name": "modadd",
            "task.seq_len": 8,
            "task.n_train": 512,
            "model.n_layers": 1,
            "model.d_model": 16,
        },
        ("chance_plateau",),
        "modular addition (modulus 23) from 512 examples with a 1-layer d_model 16 model in "
        "140 steps: it memorises or generalises only long after (Power et al. 2022)",
    ),
    "lr_far_below": (
        {"train.lr": 1e-6},
        ("update_size", "chance_plateau", "sharpness_vs_lr"),
        "lr 1e-6 (10^4 x below the quickstart's): nothing moves",
    ),
    # ---------------------------------------------------------------- healthy
    "reverse_pre": ({}, (), "the quickstart's pre-LN on reverse"),
    "reverse_post_auto": (
        {"model.norm_placement": "post", "train.lr": 5e-3},
        (),
        "post-LN with init=auto (unit-RMS inputs) and warmup",
    ),
    "copy_rope": (
        {"task.name": "copy", "model.pos_encoding": "rope"},
        (),
        "copy with RoPE",
    ),
    "recall_small": (
        {"task.name": "recall", "model.d_model": 24, "model.n_heads": 2, "task.n_symbols": 8},
        (),
        "associative recall, d_model 24",
    ),
    "sort_deeper": (
        {"task.name": "sort", "model.n_layers": 3, "model.init": "xavier"},
        (),
        "sort, 3 layers, xavier init",
    ),
    "reverse_qknorm_large_batch": (
        {"model.qk_norm": True, "task.batch_size": 64, "model.d_model": 48, "model.n_heads": 4},
        (),
        "reverse with QK-norm, d_model 48, batch 64",
    ),
}
HEALTHY = tuple(k for k, (_, causes, _) in CONFIGS.items() if not causes)


def outcome(run_dir: Path, status: str) -> str:
    """learned / did_not_learn / collapsed (summary.json's verdict) or diverged / failed."""
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if status == "diverged" or summary.get("status") == "diverged":
        return "diverged"
    verdict = (summary.get("learning") or {}).get("status")
    return str(verdict) if verdict else status or "failed"


def digest(name: str) -> str:
    """A short hash of what a configuration's runs are (the shared settings and its
    overrides): a row with another digest was trained from an earlier version of it."""
    overrides, _, _ = CONFIGS[name]
    text = json.dumps([BASE, overrides], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def label(row: dict[str, Any]) -> dict[str, Any]:
    """The row's plant and causes as its configuration now names them."""
    causes = CONFIGS[row["config"]][1]
    return {**row, "plant": "healthy" if not causes else row["config"], "causes": list(causes)}


def commit() -> tuple[str, bool]:
    """The code's commit and whether ``bench/`` or this tool differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "bench", "tools/diagnosis_corpus.py")
    return git("rev-parse", "HEAD") or "unknown", bool(dirty)


def half_of(seed: int) -> str | None:
    return next((h for h, seeds in HALVES.items() if seed in seeds), None)


def train_one(name: str, seed: int, root: Path) -> dict[str, Any]:
    from bench.config import build_run_config
    from bench.training.run import train_run

    overrides, causes, _ = CONFIGS[name]
    o = {
        **BASE,
        **overrides,
        "train.seed": seed,
        "task.seed": seed,
        "tracking.out_dir": str(root / "runs"),
        "tracking.name": f"{name}-s{seed}",
    }
    started = time.process_time()
    result = train_run(build_run_config(overrides=o))
    return {
        "run": f"{name}-s{seed}",
        "run_dir": str(Path(result.run_dir).relative_to(root)),
        "config": name,
        "config_digest": digest(name),
        "seed": seed,
        "half": half_of(seed),
        "plant": "healthy" if not causes else name,
        "causes": list(causes),
        "outcome": outcome(Path(result.run_dir), result.status),
        "cpu_seconds": round(time.process_time() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("runs/diagnosis-corpus"))
    ap.add_argument("--half", choices=sorted(HALVES), required=True, help="which seeds (HALVES)")
    ap.add_argument("--seeds", type=int, nargs="+", help="some seeds of the half only")
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="these configurations")
    args = ap.parse_args(argv)
    seeds = args.seeds or list(HALVES[args.half])
    outside = [s for s in seeds if s not in HALVES[args.half]]
    if outside:
        print(
            f"--seeds {' '.join(map(str, outside))}: not in the {args.half} half "
            f"(seeds {', '.join(map(str, HALVES[args.half]))})",
            file=sys.stderr,
        )
        return 2
    sha, dirty = commit()
    if args.half == "held_out" and dirty:
        print(
            "--half held_out: bench/ or tools/diagnosis_corpus.py has uncommitted changes; "
            "commit the registered thresholds first (docs/diagnoses.md)",
            file=sys.stderr,
        )
        return 2
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    labels_path = root / "labels.json"
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {"runs": []}
    labels.update(
        halves=HALVES,
        configs={
            k: {"causes": list(c), "planted": d, "overrides": o, "digest": digest(k)}
            for k, (o, c, d) in CONFIGS.items()
        },
    )
    # a row made by an earlier version of its configuration is trained again
    # a row trained from an earlier version of its configuration is trained again; the
    # others take the causes their configuration names now
    labels["runs"] = [
        label(r)
        for r in labels["runs"]
        if r["config"] in CONFIGS and r.get("config_digest") == digest(r["config"])
    ]
    labels_path.write_text(json.dumps(labels, indent=1))
    done = {r["run"] for r in labels["runs"]}
    wall = time.time()
    for seed in seeds:
        for name in args.only or CONFIGS:
            if f"{name}-s{seed}" in done:
                continue
            row = {**train_one(name, seed, root), "commit": sha, "dirty": dirty}
            labels["runs"].append(row)
            labels_path.write_text(json.dumps(labels, indent=1))
            print(f"{row['run']}: {row['outcome']} ({row['cpu_seconds']} s CPU)", flush=True)
    cpu = sum(r["cpu_seconds"] for r in labels["runs"])
    print(
        f"{len(labels['runs'])} runs, {cpu:.0f} s CPU in all; this call {time.time() - wall:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
