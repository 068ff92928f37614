"""Loss-landscape speed: bench's chunked grid against loss-landscapes 3.0.6 and the per-point loop.

One model (default: a d_model=64, 2-layer, 4-head decoder on copy at seq_len 16,
33 tokens a sequence, max_len 64: 105,472 parameters; ``--set key=value`` to
change), one validation batch of ``--batch`` sequences (each size of ``--batch``
in turn), the training loss, and the 441 points that loss-landscapes'
``planar_interpolation`` evaluates on a 21 x 21 plane of two filter-normalised
random directions (its odd columns sit one step lower than its even ones, so
bench is given exactly those coordinates). Timed, interleaved ``--repeats``
times, fastest kept, wall and CPU seconds:

- ``loss-landscapes``: ``planar_interpolation`` with a ``Metric`` that returns
  ``float(loss)``, the model in eval mode (it moves the weights in place, one
  ``add_`` a point, and runs the plain forward);
- ``bench``: :func:`bench.diagnostics.landscape.evaluate_points` as a run calls
  it, with the chunk cache cleared first, so the time includes measuring the
  chunk size;
- ``bench, chunk remembered``: the same call again, the cached chunk reused;
- ``bench loop``: :func:`evaluate_points` with ``batched=False``, one point at a time.

Prints each time, the ratio of loss-landscapes to each, the chunk chosen and
the largest difference between bench's losses and loss-landscapes' (both
evaluate the same points; loss-landscapes accumulates its steps in place, so
the parameters differ in the last bits). Needs the ``compare`` extra
(``pip install -e '.[compare]'``). Target: bench at least 2x faster.

    python tools/landscape_benchmark.py [--batch 1 8 32] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import sys
import time
from collections.abc import Callable
from typing import Any

TARGET = 2.0
MODEL: dict[str, Any] = {  # the ~100k-parameter model (105,472 parameters)
    "task.name": "copy",
    "task.seq_len": 16,
    "task.eval_scales": [1],
    "model.d_model": 64,
    "model.n_layers": 2,
    "model.n_heads": 4,
    "model.max_len": 64,
    "tracking.mode": "disabled",
}


def _model(overrides: dict[str, Any], batch_size: int) -> tuple[Any, Any]:
    from bench.config import build_run_config
    from bench.training.module import BenchModule
    from bench.training.prepare import prepare

    prep = prepare(build_run_config(overrides=overrides | {"task.batch_size": batch_size}))
    dm = prep.datamodule
    dm.setup("fit")
    module = BenchModule(prep.cfg, dm.eval_lengths)
    return module, next(iter(dm.val_dataloader()[0]))


def _ll_coords(steps: int, lo: float, step: float) -> Any:
    """The points ``planar_interpolation(steps=steps)`` evaluates, as ``[i, j] -> (x, y)``
    of its output matrix: column ``i`` is ``x = lo + i step``; even columns step ``y`` up
    before each point (``lo + (j + 1) step``), odd ones down after (``lo + j step``)."""
    import numpy as np

    i, j = np.meshgrid(np.arange(steps), np.arange(steps), indexing="ij")
    x = lo + i * step
    y = lo + (j + (i % 2 == 0)) * step
    return np.stack([x.ravel(), y.ravel()], axis=1)


def _ll_models(module: Any, like: Any, d1: Any, d2: Any, steps: int, lo: float, step: float):
    """Start and the two end models whose plane is ``like + x d1 + y d2``."""
    import torch

    models = [copy.deepcopy(module).eval() for _ in range(3)]
    span = steps * step
    with torch.no_grad():
        for (name, p0), p1, p2 in zip(
            models[0].named_parameters(),
            models[1].parameters(),
            models[2].parameters(),
            strict=True,
        ):
            start = like[name] + lo * d1[name] + lo * d2[name]
            p0.copy_(start)
            p1.copy_(start + span * d1[name])
            p2.copy_(start + span * d2[name])
    return models


def _contenders(module: Any, batch: Any, steps: int) -> tuple[dict[str, Any], Any]:
    """The four timed callables (each returns its losses and its start times) and the points."""
    import loss_landscapes
    from loss_landscapes.metrics import Metric

    from bench.diagnostics.landscape import Plane, Surface, evaluate_points, random_directions
    from bench.diagnostics.landscape.chunking import CHUNKS
    from bench.diagnostics.loss import training_loss
    from bench.diagnostics.parameters import trainable_params

    like = trainable_params(module)
    d1, d2 = random_directions(like, seed=0)
    lo, step = -1.0, 2.0 / (steps - 1)
    coords = _ll_coords(steps, lo, step)

    class BenchLoss(Metric):
        def __call__(self, model_wrapper: Any) -> float:
            return float(training_loss(model_wrapper.modules[0], batch))

    def ll() -> Any:
        start, end1, end2 = _ll_models(module, like, d1, d2, steps, lo, step)
        began = time.perf_counter(), time.process_time()
        return loss_landscapes.planar_interpolation(start, end1, end2, BenchLoss(), steps), began

    surface, plane = Surface(module, training_loss, [batch]), Plane(like, d1, d2)

    def timed(clear: bool = False, batched: bool = True) -> Callable[[], Any]:
        def run() -> Any:
            if clear:
                CHUNKS.clear()
            began = time.perf_counter(), time.process_time()
            return evaluate_points(surface, plane, coords, batched=batched), began

        return run

    return {
        "loss-landscapes": ll,
        "bench": timed(clear=True),
        "bench, chunk remembered": timed(),
        "bench loop": timed(batched=False),
    }, coords


def _measure(module: Any, batch: Any, steps: int, repeats: int) -> float:
    """Time the contenders interleaved, print the table for one batch size."""
    import numpy as np

    from bench.diagnostics.landscape.chunking import CHUNKS
    from bench.diagnostics.parameters import n_params, trainable_params

    contenders, coords = _contenders(module, batch, steps)
    wall = dict.fromkeys(contenders, float("inf"))
    cpu = dict(wall)
    out: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            z, (w0, c0) = fn()
            wall[name] = min(wall[name], time.perf_counter() - w0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
            out[name] = np.asarray(z).ravel()
    chunk = next(iter(CHUNKS.chosen.values()), None)
    timings = next(iter(CHUNKS.timings.values()), {})
    print(
        f"\nbatch {batch['input_ids'].shape[0]} ({int(batch['input_ids'].numel())} tokens), "
        f"{n_params(trainable_params(module)):,} parameters, {len(coords)} points; "
        f"chunk chosen: {chunk} (measured per point: "
        + ", ".join(f"{c}: {t * 1e3:.2f} ms" for c, t in timings.items())
        + ")"
    )
    print(f"  {'':26s} {'wall s':>8s} {'cpu s':>8s} {'ll/this wall':>13s} {'ll/this cpu':>12s}")
    for name in contenders:
        ratio_w, ratio_c = wall["loss-landscapes"] / wall[name], cpu["loss-landscapes"] / cpu[name]
        print(f"  {name:26s} {wall[name]:8.3f} {cpu[name]:8.3f} {ratio_w:13.2f} {ratio_c:12.2f}")
    diff = max(float(np.abs(out[k] - out["loss-landscapes"]).max()) for k in contenders)
    loop_diff = float(np.abs(out["bench"] - out["bench loop"]).max())
    print(f"  max |loss - loss-landscapes'| {diff:.1e}; max |chunked - loop| {loop_diff:.1e}")
    return wall["loss-landscapes"] / wall["bench"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8], help="sequences per batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=21, help="grid points a side")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    if importlib.util.find_spec("loss_landscapes") is None:
        print(
            "needs loss-landscapes: pip install -c constraints.txt -e '.[compare]'", file=sys.stderr
        )
        return 2

    import torch

    from bench.config import parse_value

    overrides = dict(MODEL)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, loss-landscapes {importlib.metadata.version('loss-landscapes')}, "
        f"{args.threads} thread(s), {args.steps}x{args.steps} plane, "
        f"fastest of {args.repeats} interleaved repeats"
    )
    ratios = [_measure(*_model(overrides, b), args.steps, args.repeats) for b in args.batch]
    worst = min(ratios)
    verdict = "met" if worst >= TARGET else "NOT met"
    print(
        f"\nworst ll/bench (wall, chunk measured in the call): {worst:.2f}x; target {TARGET}x {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
