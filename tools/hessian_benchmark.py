"""Hessian-vector product speed: bench's HessianOperator against plain double backward.

One model (default: the d_model=64, 2-layer, 4-head decoder on copy of
``tools/landscape_benchmark.py``, 105,472 parameters; ``--set key=value`` to
change) and one validation batch of ``--batch`` sequences (default 32, the
task's batch size: what the Hessian callback measures on). In the same context
(:func:`bench.diagnostics.context.functional_context`: eval mode, math SDPA),
each of these builds its gradient graph once and then computes products
``H v`` for the same random ``v``, timed interleaved ``--rounds`` times, ``--products``
products a round, the fastest round kept (wall and CPU seconds per product):

- ``plain autograd``: ``torch.autograd.grad(loss, params, create_graph=True)`` on
  the module's own parameters, then ``torch.autograd.grad(grads, params, v,
  retain_graph=True)`` per product (per-parameter tensors, no flattening);
- ``bench``: :class:`bench.diagnostics.hessian.spectrum.HessianOperator` (flat ``v`` in,
  flat ``H v`` out);
- ``torch.func``: ``torch.func.vjp(torch.func.grad(loss))``, what bench used before;
- ``batched m=M`` (with ``--batched M ...``): bench's graph, ``M`` products a call from
  one ``torch.autograd.grad(..., is_grads_batched=True)`` over an ``[M, n]`` block
  (vmap over the double backward; the time is per product). Issue 15 item 3 asked
  whether this speeds up the Hessian's independent products (Hutchinson probes, SLQ
  runs); its largest difference from bench's one-at-a-time products is printed.

Prints the times, each one's ratio to plain autograd and whether bench's
product equals plain autograd's bit for bit. Target: bench within 5% of plain.

    python tools/hessian_benchmark.py [--batch 32] [--rounds 7] [--products 10] [--threads 1]
        [--batched 5 10 25 50]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 1.05


def _batched_product(op: Any, block: Any) -> Any:
    """``H V^T`` for each row of ``block`` ``[m, n]``, in one vmapped double backward."""
    import torch

    m = block.shape[0]
    parts = block.split(op._sizes, dim=1)
    outs = [t.reshape(m, *g.shape) for t, g in zip(parts, op._grads, strict=True)]
    hv = torch.autograd.grad(op._grads, op._leaves, outs, retain_graph=True, is_grads_batched=True)
    return torch.cat([h.reshape(m, -1) for h in hv], dim=1)


def _products(module: Any, batch: Any) -> tuple[dict[str, Callable[[], Any]], Any]:
    """Per contender, a function that computes one product (graphs built here, once)."""
    import torch

    from bench.diagnostics.hessian.spectrum import HessianOperator
    from bench.diagnostics.loss import loss_at, training_loss
    from bench.diagnostics.parameters import flatten_params, trainable_params, unflatten_params

    params = [p for p in module.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    v = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(0))
    parts = [t.view_as(p) for t, p in zip(v.split(sizes), params, strict=True)]

    grads = torch.autograd.grad(training_loss(module, batch), params, create_graph=True)

    def plain() -> Any:
        return torch.autograd.grad(grads, params, parts, retain_graph=True)

    op = HessianOperator(module, training_loss, batch)

    like = trainable_params(module)
    f = loss_at(module, training_loss)
    grad_fn = torch.func.grad(lambda flat: f(unflatten_params(flat, like), batch))
    vjp = torch.func.vjp(grad_fn, flatten_params(like).detach())[1]

    return {
        "plain autograd": plain,
        "bench": lambda: op(v),
        "torch.func": lambda: vjp(v),
    }, (plain, op, v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="sequences per batch")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--products", type=int, default=10, help="products per contender a round")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--batched", type=int, nargs="*", default=[], metavar="M", help="also time blocks of M"
    )
    args = p.parse_args(argv)
    if min(args.batch, args.rounds, args.products, args.threads, *args.batched) < 1:
        print(
            "--batch, --rounds, --products, --threads and --batched: allowed: integers >= 1",
            file=sys.stderr,
        )
        return 2

    import torch

    from bench.config import parse_value
    from bench.diagnostics.context import functional_context
    from bench.diagnostics.parameters import n_params, trainable_params

    sys.path.insert(0, str(Path(__file__).parent))
    from landscape_benchmark import MODEL, _model  # the same model and batch

    overrides = dict(MODEL)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    torch.set_num_threads(args.threads)
    module, batch = _model(overrides, args.batch)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with functional_context(module, grad=True):
        contenders, (plain, op, v) = _products(module, batch)
        per_call = dict.fromkeys(contenders, 1)
        blocks = {}
        for m in args.batched:
            block = torch.randn(m, op.n, generator=torch.Generator().manual_seed(m))
            blocks[f"batched m={m}"] = block
            contenders[f"batched m={m}"] = functools.partial(_batched_product, op, block)
            per_call[f"batched m={m}"] = m
        for fn in contenders.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                calls = max(1, args.products // per_call[name])
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    fn()
                done = calls * per_call[name]
                wall[name] = min(wall.get(name, 1e9), (time.perf_counter() - w0) / done)
                cpu[name] = min(cpu.get(name, 1e9), (time.process_time() - c0) / done)
        reference = torch.cat([h.reshape(-1) for h in plain()])
        same = torch.equal(op(v), reference)
        batched_diff = {
            name: float((_batched_product(op, b) - torch.stack([op(r) for r in b])).abs().max())
            for name, b in blocks.items()
        }
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), "
        f"{n_params(trainable_params(module)):,} parameters, batch {args.batch} "
        f"({int(batch['input_ids'].numel())} tokens); fastest of {args.rounds} interleaved "
        f"rounds of {args.products} products"
    )
    print(f"  {'':16s} {'wall ms':>8s} {'cpu ms':>8s} {'/plain wall':>12s} {'/plain cpu':>11s}")
    for name in contenders:
        rw, rc = wall[name] / wall["plain autograd"], cpu[name] / cpu["plain autograd"]
        print(f"  {name:16s} {wall[name] * 1e3:8.2f} {cpu[name] * 1e3:8.2f} {rw:12.3f} {rc:11.3f}")
    ratio = wall["bench"] / wall["plain autograd"]
    print(f"bench's product equals plain autograd's bit for bit: {same}")
    for name, diff in batched_diff.items():
        print(f"{name}: largest |difference| from bench's one-at-a-time products: {diff:.3g}")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"bench / plain autograd (wall): {ratio:.3f}; target <= {TARGET} {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
