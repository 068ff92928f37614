"""Generate the labelled corpus of runs that measures the diagnosis rules (issue 29, Build 1).

Every run is trained from a config written below (nothing hand-picked): a *plant* is a
configuration known from its paper to cause one failure, and names the rules that should
diagnose it; a *healthy* configuration (several tasks, sizes and inits, including copy,
reversal and recall, which need sharp attention) plants nothing. Each configuration runs
at every seed in ``--seeds`` (``train.seed`` = ``task.seed`` = the seed); seeds below
``--split`` are the *tuning* half (thresholds may be set on them), the others the
*held-out* half (figures are reported on them only).

Labels are written to ``ROOT/labels.json`` as each run finishes, from the plant and from
the run's outcome alone (``summary.json``'s learning verdict, or diverged), before and
independently of any rule: a rule's *positives* are the runs where its cause was planted
and the run did not learn (or diverged). A planted run that learned anyway is kept with
its label (``outcome: learned``): the symptom gate must give it no diagnosis.

Usage (single-threaded; about 4 minutes of CPU for the default 48 runs):

    nice -n 10 python tools/diagnosis_corpus.py --root runs/diagnosis-corpus
    python tools/diagnosis_eval.py runs/diagnosis-corpus

``--only NAME`` regenerates one configuration; runs already labelled are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

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
    "post_ln_small_init": (
        {
            "model.norm_placement": "post",
            "model.init": "gpt2",
            "model.embed_scale": "none",
            "train.warmup_steps": 0,
            "train.lr": 3e-2,
        },
        ("uniform_attention", "ill_conditioned_depth", "chance_plateau"),
        "post-LN, N(0, 0.02) weights and unscaled embeddings, no warmup, high lr "
        "(Xiong et al. 2020; issue 16)",
    ),
    "lr_far_above": (
        {"train.lr": 0.5, "train.warmup_steps": 0, "train.grad_clip": None, "model.qk_norm": False},
        (
            "attention_logit_growth",
            "entropy_collapse",
            "loss_spikes",
            "sharpness_vs_lr",
            "update_size",
        ),
        "pre-LN at lr 0.5 (50x the quickstart's), no warmup, no clipping, no QK-norm "
        "(Wortsman et al. 2023; Zhai et al. 2023; Cohen et al. 2021)",
    ),
    "output_logits_high_lr": (
        {
            "train.lr": 0.2,
            "train.warmup_steps": 0,
            "train.weight_decay": 0.0,
            "train.grad_clip": None,
            "model.tie_embeddings": False,
            "model.qk_norm": True,
        },
        ("output_logit_divergence", "loss_spikes", "sharpness_vs_lr", "update_size"),
        "lr 0.2 with no weight decay, no clipping, untied output layer and no z-loss; "
        "QK-norm on so the attention logits cannot be the cause (Wortsman et al. 2023, Sec. 3.2)",
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
        "seed": seed,
        "plant": "healthy" if not causes else name,
        "causes": list(causes),
        "outcome": outcome(Path(result.run_dir), result.status),
        "cpu_seconds": round(time.process_time() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("runs/diagnosis-corpus"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--split", type=int, default=2, help="seeds below it: the tuning half")
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="these configurations")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    labels_path = root / "labels.json"
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {"runs": []}
    labels.update(
        seeds=args.seeds,
        split=args.split,
        halves={
            "tune": [s for s in args.seeds if s < args.split],
            "held_out": [s for s in args.seeds if s >= args.split],
        },
        configs={
            k: {"causes": list(c), "planted": d, "overrides": o} for k, (o, c, d) in CONFIGS.items()
        },
    )
    done = {r["run"] for r in labels["runs"]}
    wall = time.time()
    for seed in args.seeds:
        for name in args.only or CONFIGS:
            if f"{name}-s{seed}" in done:
                continue
            row = train_one(name, seed, root)
            row["half"] = "tune" if seed < args.split else "held_out"
            labels["runs"].append(row)
            labels_path.write_text(json.dumps(labels, indent=1))
            print(f"{row['run']}: {row['outcome']} ({row['cpu_seconds']} s CPU)", flush=True)
    cpu = sum(r["cpu_seconds"] for r in labels["runs"])
    print(
        f"{len(labels['runs'])} runs, {cpu:.0f} s CPU in all; this call {time.time() - wall:.0f} s"
    )


if __name__ == "__main__":
    main()
