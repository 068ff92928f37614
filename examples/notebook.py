# %% [markdown]
# # bench from a notebook
#
# Train two variants, compare their curves as a DataFrame, then run a tiny sweep and read
# its runs as a table: the Python API (`bench.train`, `bench.load_run`, `bench.sweep`,
# `bench.load_sweep`) with pandas (`pip install 'bench[notebook]'`). Open it in Jupyter
# or VS Code (the `# %%` lines are cells), or run it whole from the repository's root:
#
#     python examples/notebook.py
#
# About a minute on 2 CPU cores; runs go to `runs/`, the sweep to `runs/sweeps/notebook`.

# %%
import pandas as pd

import bench

TINY = {  # seconds a run; W&B off to keep it quick (offline is the default)
    "task.name": "copy",
    "task.seq_len": 8,
    "task.n_symbols": 8,
    "task.n_train": 512,
    "task.n_val": 64,
    "task.eval_scales": [1],
    "model.d_model": 32,
    "model.n_layers": 2,
    "model.n_heads": 2,
    "train.max_steps": 60,
    "train.val_every": 20,
    "train.warmup_steps": 5,
    "train.progress_bar": False,
    "tracking.mode": "disabled",
    "diagnostics.figures": False,
}

# %% Two runs: pre-LN and post-LN, everything else equal
results = {
    placement: bench.train({**TINY, "model.norm_placement": placement})
    for placement in ("pre", "post")
}
for placement, result in results.items():
    print(f"{placement}-LN: {result.status}, val/loss {result.metrics['val/loss']:.3f}")

# %% Their histories side by side: one row per logged step
curves = pd.concat(
    {p: bench.load_run(r.run_dir).to_pandas() for p, r in results.items()},
    names=["norm_placement", "step"],
)
val_loss = curves["val/loss"].dropna().unstack("norm_placement")
print(val_loss)  # val_loss.plot() draws both curves

# %% A sweep: the same question with a tuned learning rate and a seed run per cell
sweep_dir = bench.sweep("examples/notebook.yaml", workers=1)  # rerunning it resumes

# %% Its runs as a table: one row per trial (bench export writes the same table)
runs = bench.load_sweep(sweep_dir).to_pandas()
print(runs[["cell", "phase", "trial", "train.lr", "status", "val/loss"]].to_string())

# %% The seed runs compared per cell (the report judges them: bench.build_report(sweep_dir))
seeds = runs[runs["phase"] == "seed"]
print(seeds.groupby("norm_placement")["val/loss"].agg(["mean", "count"]))
