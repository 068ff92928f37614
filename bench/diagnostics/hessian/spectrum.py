"""Hessian of the loss: products, extreme eigenvalues, trace and spectral density.

The callback that measures it during training is
:mod:`bench.diagnostics.hessian.callback`; the Lanczos iteration is
:mod:`bench.diagnostics.hessian.lanczos`.

Everything is matrix-free: the Hessian is only ever applied to vectors, by
plain double backward (:class:`HessianOperator`). The gradient graph is built
once per (parameters, batch) and reused for every product.

Methods (and why):

- Extreme eigenvalues: Lanczos with full re-orthogonalisation (not power
  iteration with deflation). It finds the top-k algebraic eigenvalues and the
  most negative one from one Krylov space, in far fewer products than power
  iteration, which also converges to the largest *magnitude* rather than the
  largest eigenvalue. Stops when the wanted Ritz residuals
  ``|beta_j * s_{j,i}|`` fall below ``tol * max|theta|``. One limitation: a
  Krylov space holds one copy of a repeated eigenvalue, so an exactly repeated
  top eigenvalue is reported once.
- ``lambda_min``: the smallest Ritz value of that same Lanczos run (its residual
  is part of the stopping test in :func:`hessian_analysis`).
- Trace: Hutchinson's estimator with Rademacher vectors, mean and standard error.
- Spectral density: stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao
  2019): Ritz values and squared first eigenvector components of several Lanczos
  runs from random unit vectors, each node broadened by a Gaussian.
- Condition proxy: ``lambda_max / (trace / n_params)``, how far the sharpest
  direction stands above the mean curvature (NaN if the trace is not positive).
  A true condition number ``lambda_max / lambda_min`` is meaningless for an
  indefinite Hessian.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.diagnostics.context import compute_dtype, functional_context
from bench.diagnostics.hessian.lanczos import LanczosResult, broadened_density, lanczos
from bench.diagnostics.loss import LossFn, loss_at
from bench.diagnostics.parameters import as_flat, trainable_params, unflatten_params

# ----------------------------------------------------------------------------- the operator


class HessianOperator:
    """``v -> H v`` for a flat vector ``v``, at fixed parameters and batch.

    Build (and use) it inside :func:`bench.diagnostics.context.functional_context`
    with ``grad=True``. Plain double backward (Pearlmutter 1994's ``R``-operator as
    reverse-over-reverse): the gradient is taken once with ``create_graph=True``
    with respect to one leaf per parameter, and each product is one more
    ``torch.autograd.grad`` of it against ``v`` (split like the parameters),
    keeping the graph for the next: the same bits as double backward written out
    on the module, whose time it matches (``tools/hessian_benchmark.py`` times
    both and ``torch.func.vjp(torch.func.grad(loss))``, which issue 15 measured
    17% slower). Memory: about that of one training step plus a few parameter
    copies.
    """

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        batch: Any,
        params: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.like = dict(params) if params is not None else trainable_params(module)
        leaves = {n: p.detach().requires_grad_(True) for n, p in self.like.items()}
        loss = loss_at(module, loss_fn)(leaves, batch)
        self._leaves = list(leaves.values())
        self._grads = torch.autograd.grad(loss, self._leaves, create_graph=True)
        self._sizes = [p.numel() for p in self._leaves]
        self.loss = float(loss.detach())
        self.n = sum(self._sizes)
        ref = self._leaves[0]
        self.device = ref.device
        self.dtype = ref.dtype

    @property
    def grad(self) -> Tensor:
        """The flat gradient at the operator's parameters (detached)."""
        return torch.cat([g.detach().reshape(-1) for g in self._grads])

    def __call__(self, v: Tensor) -> Tensor:
        parts = v.to(self.device, self.dtype).reshape(-1).split(self._sizes)
        outs = [p.view_as(g) for p, g in zip(parts, self._grads, strict=True)]
        hv = torch.autograd.grad(self._grads, self._leaves, outs, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _gaussian(op: HessianOperator, gen: torch.Generator) -> Tensor:
    # Drawn on CPU so the same seed gives the same vector on every device.
    return torch.randn(op.n, generator=gen, dtype=op.dtype).to(op.device)


def _rademacher(op: HessianOperator, gen: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, (op.n,), generator=gen).to(op.dtype) * 2 - 1
    return signs.to(op.device)


# ----------------------------------------------------------------------------- estimators


def _top_and_min(
    op: HessianOperator, k: int, iters: int, tol: float, seed: int, want_min: bool
) -> LanczosResult:
    # Budget k * iters products: what power iteration with deflation would spend.
    return lanczos(
        op, _gaussian(op, _generator(seed)), k * iters, tol=tol, n_top=k, want_min=want_min
    )


def _hutchinson(op: HessianOperator, n_samples: int, seed: int) -> tuple[float, float]:
    gen = _generator(seed)
    samples = []
    for _ in range(n_samples):
        z = _rademacher(op, gen)
        samples.append(float(torch.dot(z, op(z))))
    x = np.asarray(samples, dtype=np.float64)
    stderr = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), stderr


def _slq(
    op: HessianOperator, n_lanczos: int, n_vectors: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz nodes and weights, ``[n_vectors, steps]`` (short runs padded with weight 0)."""
    gen = _generator(seed)
    steps = min(n_lanczos, op.n)
    nodes = np.zeros((n_vectors, steps))
    weights = np.zeros((n_vectors, steps))
    for i in range(n_vectors):
        run = lanczos(op, _rademacher(op, gen), steps)
        nodes[i, : run.steps] = run.ritz
        weights[i, : run.steps] = run.weights
    return nodes, weights


# ----------------------------------------------------------------------------- public functions


def hvp(
    module: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    vec: Tensor | Mapping[str, Tensor],
    params: Mapping[str, Tensor] | None = None,
) -> Tensor | dict[str, Tensor]:
    """Hessian-vector product ``H v`` of ``loss_fn(module, batch)`` at ``params``.

    ``vec`` is a flat vector or a name->tensor dict over the trainable parameters;
    the result has the same form. ``params`` defaults to the module's own.
    """
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch, params)
        out = op(as_flat(vec, op.like))
    if isinstance(vec, Tensor):
        return out.view_as(vec)
    return {n: t.clone() for n, t in unflatten_params(out, op.like).items()}


def top_eigenvalues(
    module: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    k: int = 3,
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """The ``k`` largest (algebraic) Hessian eigenvalues, descending, by Lanczos.

    At most ``k * iters`` Hessian-vector products (the budget of power iteration
    with deflation); usually far fewer, as it stops once the top-k Ritz residuals
    are below ``tol`` relative to the spectral radius estimate.
    """
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch)
        run = _top_and_min(op, k, iters, tol, seed, want_min=False)
    return [float(x) for x in run.ritz[::-1][:k]]


def hutchinson_trace(
    module: nn.Module, loss_fn: LossFn, batch: Any, n_samples: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Hutchinson estimate of ``tr(H)`` from Rademacher vectors: ``(mean, stderr)``."""
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch)
        return _hutchinson(op, n_samples, seed)


def spectral_density(
    module: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    n_lanczos: int = 40,
    n_vectors: int = 3,
    seed: int = 0,
    n_grid: int = 1000,
    sigma_frac: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Hessian eigenvalue density by stochastic Lanczos quadrature: ``(grid, density)``."""
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch)
        nodes, weights = _slq(op, n_lanczos, n_vectors, seed)
    return broadened_density(nodes, weights, n_grid, sigma_frac)


@dataclass
class HessianResult:
    """Everything one Hessian measurement produces."""

    top_k: list[float]
    lambda_min: float
    trace: float
    trace_stderr: float
    n_params: int
    loss: float
    lanczos_steps: int
    converged: bool
    ritz_nodes: np.ndarray
    ritz_weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)
    dtype: str = "float32"  # what the Hessian-vector products ran in (autocast off)

    @property
    def condition(self) -> float:
        """``lambda_max / (trace / n_params)``; NaN when the trace is not positive."""
        mean = self.trace / self.n_params
        return self.top_k[0] / mean if mean > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        """The ``hessian/...`` metrics (``hessian/top_k`` is a list, descending)."""
        return {
            "hessian/lambda_max": self.top_k[0],
            "hessian/lambda_min": self.lambda_min,
            "hessian/trace": self.trace,
            "hessian/trace_stderr": self.trace_stderr,
            "hessian/condition": self.condition,
            "hessian/top_k": list(self.top_k),
        }

    def scalars(self) -> dict[str, float]:
        """The summary with ``top_k`` spread into ``hessian/top_{i}`` scalars, for loggers."""
        out = {k: float(v) for k, v in self.summary().items() if k != "hessian/top_k"}
        out.update({f"hessian/top_{i + 1}": float(v) for i, v in enumerate(self.top_k)})
        out["hessian/lanczos_converged"] = float(self.converged)
        return out | self.extra


def hessian_analysis(
    module: nn.Module,
    loss_fn: LossFn,
    batch: Any,
    top_k: int = 3,
    iters: int = 20,
    tol: float = 1e-4,
    n_trace_samples: int = 50,
    n_lanczos: int = 40,
    n_vectors: int = 3,
    seed: int = 0,
) -> HessianResult:
    """Top-k and smallest eigenvalues, trace and density from one Hessian operator
    (``n_vectors=0``: no density, ``grid`` and ``density`` empty).

    Computed with autocast off (:func:`~bench.diagnostics.context.functional_context`):
    in float32 under a ``bf16-mixed`` run, whose weights are float32;
    ``HessianResult.dtype`` says which.
    """
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch)
        run = _top_and_min(op, top_k, iters, tol, seed, want_min=True)
        trace, stderr = _hutchinson(op, n_trace_samples, seed + 1)
        nodes, weights = _slq(op, n_lanczos, n_vectors, seed + 2)
    if n_vectors:
        grid, density = broadened_density(nodes, weights)
    else:  # no density asked for: no quadrature, nothing to broaden
        grid, density = np.zeros(0), np.zeros(0)
    return HessianResult(
        top_k=[float(x) for x in run.ritz[::-1][:top_k]],
        lambda_min=float(run.ritz[0]),
        trace=trace,
        trace_stderr=stderr,
        n_params=op.n,
        loss=op.loss,
        lanczos_steps=run.steps,
        converged=run.converged,
        ritz_nodes=nodes,
        ritz_weights=weights,
        grid=grid,
        density=density,
        dtype=compute_dtype(module),
    )


def hessian_summary(module: nn.Module, loss_fn: LossFn, batch: Any, **kwargs: Any) -> dict:
    """``hessian/lambda_max``, ``lambda_min``, ``trace``, ``trace_stderr``, ``condition``,
    ``top_k`` (list); keyword arguments as :func:`hessian_analysis`."""
    return hessian_analysis(module, loss_fn, batch, **kwargs).summary()
