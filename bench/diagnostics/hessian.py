"""Hessian of the loss: products, extreme eigenvalues, trace and spectral density.

Everything is matrix-free: the Hessian is only ever applied to vectors, as
reverse-over-reverse ``torch.func.vjp(torch.func.grad(loss))``. The gradient
graph is built once per (parameters, batch) and reused for every product.

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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from scipy.linalg import eigh_tridiagonal
from torch import Tensor, nn

from bench.config import ConfigError, DiagnosticsConfig
from bench.diagnostics.functional import (
    LossFn,
    as_flat,
    flatten_params,
    functional_context,
    loss_at,
    loss_name,
    move_to,
    new_figure,
    save_figure,
    save_npz,
    trainable_params,
    training_loss,
    unflatten_params,
)

# ----------------------------------------------------------------------------- the operator


class HessianOperator:
    """``v -> H v`` for a flat vector ``v``, at fixed parameters and batch.

    Build (and use) it inside :func:`bench.diagnostics.functional.functional_context`
    with ``grad=True``. Keeps the graph of the gradient alive: memory is about
    that of one training step plus a few parameter copies.
    """

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        batch: Any,
        params: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.like = dict(params) if params is not None else trainable_params(module)
        f = loss_at(module, loss_fn)
        theta = flatten_params(self.like).detach()

        def grad_and_loss(flat: Tensor) -> tuple[Tensor, Tensor]:
            loss = f(unflatten_params(flat, self.like), batch)
            return loss, loss.detach()

        grad_fn = torch.func.grad(grad_and_loss, has_aux=True)
        self.grad, self._vjp, loss = torch.func.vjp(grad_fn, theta, has_aux=True)
        self.loss = float(loss)
        self.n = theta.numel()
        self.device = theta.device
        self.dtype = theta.dtype

    def __call__(self, v: Tensor) -> Tensor:
        (hv,) = self._vjp(v.to(self.device, self.dtype), create_graph=False)
        return hv.detach()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _gaussian(op: HessianOperator, gen: torch.Generator) -> Tensor:
    # Drawn on CPU so the same seed gives the same vector on every device.
    return torch.randn(op.n, generator=gen, dtype=op.dtype).to(op.device)


def _rademacher(op: HessianOperator, gen: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, (op.n,), generator=gen).to(op.dtype) * 2 - 1
    return signs.to(op.device)


# ----------------------------------------------------------------------------- Lanczos


@dataclass
class LanczosResult:
    """The tridiagonal ``T`` of a Lanczos run and its eigen-decomposition."""

    alphas: np.ndarray
    betas: np.ndarray  # off-diagonal, len(alphas) - 1
    ritz: np.ndarray  # eigenvalues of T, ascending
    weights: np.ndarray  # squared first components of T's eigenvectors (sum to 1)
    residuals: np.ndarray  # |beta_last * s_last,i| per Ritz value
    converged: bool

    @property
    def steps(self) -> int:
        return len(self.alphas)


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alphas, dtype=np.float64)
    if len(a) == 1:
        return a.copy(), np.ones((1, 1))
    return eigh_tridiagonal(a, np.asarray(betas, dtype=np.float64))


def _basis_device(v: Tensor, steps: int) -> torch.device:
    """Keep the Lanczos basis on the GPU only if it takes under a quarter of free memory."""
    if v.device.type != "cuda":
        return v.device
    free, _ = torch.cuda.mem_get_info(v.device)
    return v.device if steps * v.numel() * v.element_size() < free // 4 else torch.device("cpu")


def lanczos(
    matvec: Callable[[Tensor], Tensor],
    v0: Tensor,
    max_steps: int,
    *,
    tol: float | None = None,
    n_top: int = 0,
    want_min: bool = False,
) -> LanczosResult:
    """Lanczos tridiagonalisation with full re-orthogonalisation (Gram-Schmidt, twice).

    Stops after ``max_steps``, on an invariant subspace, or — when ``tol`` is
    given — once the top ``n_top`` Ritz values (and the smallest, if
    ``want_min``) have residuals below ``tol * max|ritz|``. Memory: ``max_steps``
    vectors of the parameter size.
    """
    n = v0.numel()
    max_steps = max(1, min(max_steps, n))
    # Vector algebra happens where the basis lives; only matvec's input/output move.
    basis = torch.empty(max_steps, n, dtype=v0.dtype, device=_basis_device(v0, max_steps))
    q = (v0 / v0.norm()).to(basis.device)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    beta_last = 0.0
    for j in range(max_steps):
        basis[j] = q
        w = matvec(q).to(basis.device)
        prev = basis[: j + 1]
        a = float(torch.dot(q, w))
        w = w - a * q
        if j > 0:
            w = w - betas[-1] * prev[j - 1]
        for _ in range(2):  # a second pass removes what rounding let back in
            w = w - prev.T @ (prev @ w)
        b = float(w.norm())
        alphas.append(a)
        beta_last = b
        ritz, vecs = _ritz(alphas, betas)
        scale = max(float(np.abs(ritz).max()), 1e-30)
        if b <= 1e-10 * scale:  # invariant subspace: the Ritz values are exact
            converged = True
            break
        if tol is not None and len(ritz) >= max(n_top, 1):
            res = b * np.abs(vecs[-1])
            wanted = list(range(len(ritz) - n_top, len(ritz))) + ([0] if want_min else [])
            if all(res[i] <= tol * scale for i in wanted):
                converged = True
                break
        if j == max_steps - 1:
            converged = j + 1 == n  # a full basis is exact
            break
        betas.append(b)
        q = w / b
    ritz, vecs = _ritz(alphas, betas)
    return LanczosResult(
        alphas=np.asarray(alphas),
        betas=np.asarray(betas),
        ritz=ritz,
        weights=vecs[0] ** 2,
        residuals=beta_last * np.abs(vecs[-1]),
        converged=converged,
    )


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


def broadened_density(
    nodes: np.ndarray, weights: np.ndarray, n_grid: int = 1000, sigma_frac: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Average of Gaussian-broadened quadratures: ``(grid, density)``, integrating to 1.

    ``sigma = sigma_frac * (max node - min node)``; the grid extends 6 sigma past
    the extreme nodes so the tails are inside.
    """
    live = weights > 0
    lo, hi = float(nodes[live].min()), float(nodes[live].max())
    width = hi - lo
    sigma = sigma_frac * width if width > 0 else 1e-3 * max(abs(hi), 1.0)
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, n_grid)
    z = (grid[None, :] - nodes.reshape(-1)[:, None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (weights.reshape(-1)[:, None] * kernel).sum(0) / nodes.shape[0]
    return grid, density


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
    """Top-k and smallest eigenvalues, trace and density from one Hessian operator."""
    with functional_context(module, grad=True):
        op = HessianOperator(module, loss_fn, batch)
        run = _top_and_min(op, top_k, iters, tol, seed, want_min=True)
        trace, stderr = _hutchinson(op, n_trace_samples, seed + 1)
        nodes, weights = _slq(op, n_lanczos, n_vectors, seed + 2)
    grid, density = broadened_density(nodes, weights)
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
    )


def hessian_summary(module: nn.Module, loss_fn: LossFn, batch: Any, **kwargs: Any) -> dict:
    """``hessian/lambda_max``, ``lambda_min``, ``trace``, ``trace_stderr``, ``condition``,
    ``top_k`` (list); keyword arguments as :func:`hessian_analysis`."""
    return hessian_analysis(module, loss_fn, batch, **kwargs).summary()


def plot_density(result: HessianResult, title: str = "") -> Any:
    """The spectral density on a log scale, with the top-k eigenvalues marked."""
    fig = new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    floor = max(float(result.density.max()) * 1e-8, 1e-300)
    ax.semilogy(result.grid, np.maximum(result.density, floor), lw=1.2)
    for lam in result.top_k:
        ax.axvline(lam, color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (SLQ, Gaussian-broadened)")
    ax.set_title(title or "Hessian spectral density")
    return fig


# ----------------------------------------------------------------------------- the callback

SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "64-true")


def check_precision(precision: str) -> None:
    """Raise ConfigError unless the Hessian can be measured at this Trainer precision.

    Supported: 32-true and 64-true, and bf16-mixed (float32 weights; autocast is
    disabled during the measurement). Half-precision weights (16-true, bf16-true)
    and fp16 AMP (16-mixed, whose loss scaling and fp16 range make second-order
    products unreliable) are refused.
    """
    if str(precision) not in SUPPORTED_PRECISIONS:
        raise ConfigError(
            f"diagnostics.hessian: precision {precision!r} is not supported; "
            f"allowed: {', '.join(SUPPORTED_PRECISIONS)}"
        )


def _first_val_batch(trainer: L.Trainer) -> Any:
    dm = trainer.datamodule
    if dm is None or not hasattr(dm, "val_dataloader"):
        raise ConfigError(
            "diagnostics.hessian: no evaluation batch; pass batch= or use a datamodule "
            "with val_dataloader()"
        )
    loaders = dm.val_dataloader()
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()))
    if isinstance(loaders, Sequence):
        loaders = loaders[0]
    return next(iter(loaders))


def resolve_steps(fractions: Sequence[float], total_steps: int) -> list[int]:
    """Fractions of the run (0 = before any update, 1 = the end) as sorted step numbers."""
    return sorted({round(f * total_steps) for f in fractions})


class HessianCallback(L.Callback):
    """Measures the Hessian on a fixed evaluation batch at chosen points of training.

    At each step in ``steps`` (fractions of the run's optimizer steps; 0 is before
    the first update) it runs :func:`hessian_analysis` in eval mode with
    autocast off, logs ``hessian/...`` scalars (and ``hessian/seconds``, its own
    wall time) to every logger at that step, and writes
    ``out_dir/diagnostics/hessian_step{N}.npz`` and ``.png`` (the density).
    The batch is the one given, else the first batch of the datamodule's first
    validation loader. Runs on global rank zero only.

    The loss is the training loss (:func:`~bench.diagnostics.functional.training_loss`:
    for a BenchModule, cross-entropy with ``train.label_smoothing``), so the curvature is that of the surface the
    optimizer descends; each npz records it as ``loss_fn`` (``loss`` is its value).
    """

    def __init__(
        self,
        out_dir: Path | str,
        steps: Sequence[float] = (0.0, 0.5, 1.0),
        top_k: int = 3,
        iters: int = 20,
        batch: Any = None,
        loss_fn: LossFn = training_loss,
        tol: float = 1e-4,
        n_trace_samples: int = 50,
        n_lanczos: int = 40,
        n_vectors: int = 3,
        seed: int = 0,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.fractions = list(steps)
        self.kwargs = dict(
            top_k=top_k,
            iters=iters,
            tol=tol,
            n_trace_samples=n_trace_samples,
            n_lanczos=n_lanczos,
            n_vectors=n_vectors,
            seed=seed,
        )
        self.loss_fn = loss_fn
        self.batch = batch
        self.targets: list[int] = []
        self.results: dict[int, dict[str, float]] = {}
        self.loss_name = ""

    @classmethod
    def from_config(
        cls, cfg: DiagnosticsConfig, out_dir: Path | str, **kwargs: Any
    ) -> HessianCallback:
        """Built from ``hessian_steps``, ``hessian_top_k`` and ``hessian_iters``."""
        return cls(
            out_dir,
            steps=cfg.hessian_steps,
            top_k=cfg.hessian_top_k,
            iters=cfg.hessian_iters,
            **kwargs,
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_precision(trainer.precision)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "diagnostics.hessian_steps are fractions of the run; set train.max_steps"
            )
        self.targets = resolve_steps(self.fractions, int(total))
        if trainer.global_step in self.targets:
            self._measure(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if trainer.global_step in self.targets:
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Training stopped before a requested step: measure the final weights once.
        if any(t > trainer.global_step for t in self.targets):
            self._measure(trainer, pl_module)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step in self.results or not trainer.is_global_zero:
            return
        if self.batch is None:
            self.batch = _first_val_batch(trainer)
        batch = move_to(self.batch, pl_module.device)
        start = time.perf_counter()
        result = hessian_analysis(pl_module, self.loss_fn, batch, **self.kwargs)
        self.loss_name = loss_name(pl_module, self.loss_fn)
        result.extra["hessian/seconds"] = time.perf_counter() - start
        metrics = result.scalars()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.results[step] = metrics
        self._save(result, step)

    def _save(self, result: HessianResult, step: int) -> None:
        out = self.out_dir / "diagnostics"
        save_npz(
            out / f"hessian_step{step}.npz",
            step=step,
            top_k=np.asarray(result.top_k),
            lambda_min=result.lambda_min,
            trace=result.trace,
            trace_stderr=result.trace_stderr,
            condition=result.condition,
            n_params=result.n_params,
            loss=result.loss,
            loss_fn=np.array(self.loss_name),
            lanczos_steps=result.lanczos_steps,
            converged=result.converged,
            grid=result.grid,
            density=result.density,
            ritz_nodes=result.ritz_nodes,
            ritz_weights=result.ritz_weights,
        )
        try:
            fig = plot_density(result, f"Hessian spectral density, step {step}")
            save_figure(fig, out / f"hessian_step{step}.png")
        except Exception as e:  # a figure must never fail training
            rank_zero_warn(f"hessian: could not draw the density figure: {e}")
