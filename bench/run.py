"""``train_run(RunConfig) -> RunResult``: the one place a training run is assembled.

``bench train``, every sweep trial and the tests call it. It validates
everything before it creates anything, writes the run directory (see
:mod:`bench.records`), trains with a real Lightning Trainer and reports back
plain data.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from bench import records
from bench.checkpoint import checkpoint_step
from bench.config import ConfigError, RunConfig, dump_yaml
from bench.csvlog import MetricsCSVLogger
from bench.diagnostics import build_callbacks, landscape_of
from bench.diagnostics.guard import DiagnosticErrors
from bench.lit import BenchModule
from bench.loader import ResumableLoader
from bench.preemption import PREEMPTION, Preempted, PreemptionCheckpoint
from bench.progress import make_progress
from bench.resources import check_fits
from bench.tasks import build_datamodule
from bench.tasks.baseline import judge_learning


@dataclass(frozen=True)
class RunResult:
    """What a run returns to its caller: plain data, safe across processes."""

    status: str  # completed | stopped | diverged | failed | interrupted
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    # learned | did_not_learn | collapsed (bench.tasks.baseline); "" when not judged (diverged)
    learning: str = ""
    learning_reason: str = ""
    # what bench.diagnostics.diagnoses found: [{rule, title, evidence, paper, advice}]
    diagnoses: list[dict[str, str]] = field(default_factory=list)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``run_dir`` holds it, ``resumable`` if it has a checkpoint."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.resumable = (run_dir / records.LAST_CKPT).is_file()


@dataclass
class Prepared:
    """A validated run: the resolved config and its data, nothing written yet."""

    cfg: RunConfig
    datamodule: L.LightningDataModule
    precision: str
    accelerator: str


def resolve_precision(cfg: RunConfig, cuda: bool) -> tuple[str, str]:
    """(precision, accelerator): bf16 autocast on GPU, fp32 on CPU unless set."""
    t = cfg.train
    if t.accelerator == "gpu" and not cuda:
        raise ConfigError(
            "train.accelerator='gpu' but no CUDA device is visible; allowed here: cpu, auto"
        )
    accelerator = "gpu" if t.accelerator == "gpu" or (t.accelerator == "auto" and cuda) else "cpu"
    precision = t.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    if accelerator == "cpu" and precision == "16-mixed":
        raise ConfigError(
            "train.precision='16-mixed' needs a GPU; allowed on CPU: 32-true, bf16-mixed"
        )
    return precision, accelerator


def prepare(cfg: RunConfig) -> Prepared:
    """Validate a config against its task and resolve what depends on the data.

    Raises ConfigError (one line) for any problem, before anything is written.
    """
    cfg = cfg.model_copy(deep=True)
    precision, accelerator = resolve_precision(cfg, torch.cuda.is_available())
    check_fits(cfg, accelerator)  # before the data or the model is allocated
    dm = build_datamodule(cfg.task, cfg.model.arch)
    dm.setup("fit")
    cfg.model.vocab_size = dm.vocab_size
    n_train = len(dm.train_dataloader().dataset)
    if cfg.task.batch_size > n_train:
        raise ConfigError(
            f"task.batch_size={cfg.task.batch_size} is larger than the training set "
            f"({n_train} examples of task {cfg.task.name!r}); allowed: 1..{n_train}"
        )
    if cfg.model.pos_encoding == "learned" and dm.max_positions > cfg.model.max_len:
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence the task feeds "
            f"({dm.max_positions}, task.seq_len={cfg.task.seq_len} x eval_scales "
            f"{cfg.task.eval_scales}); a learned encoding has no position past max_len: "
            f"raise model.max_len to >= {dm.max_positions}"
        )
    return Prepared(cfg, dm, precision, accelerator)


def new_run_dir(cfg: RunConfig) -> Path:
    """``tracking.run_dir`` if given, else a fresh ``out_dir/<name>-<time>``."""
    if cfg.tracking.run_dir:
        return Path(cfg.tracking.run_dir)
    m = cfg.model
    name = (
        cfg.tracking.name
        or f"{cfg.task.name}-{cfg.variant or m.arch}-{m.norm_placement}-{m.pos_encoding}"
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.tracking.out_dir) / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}


class _RunData(L.LightningDataModule):
    """The task's data, but training draws from this run's resumable loader.

    Everything else (val loaders, vocab_size, metrics, ...) is the task's.
    """

    def __init__(self, task: L.LightningDataModule, loader: ResumableLoader) -> None:
        super().__init__()
        self.task, self.loader = task, loader

    def __getattr__(self, name: str):
        if name in ("task", "loader"):  # not yet set: avoid recursing during __init__
            raise AttributeError(name)
        return getattr(self.task, name)

    def train_dataloader(self) -> ResumableLoader:
        return self.loader

    def val_dataloader(self):
        return self.task.val_dataloader()


class _TrackValidation(Callback):
    """Remembers the step of the last validation and the best val/loss seen."""

    def __init__(self) -> None:
        self.last_step = -1
        self.best: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: a resumed run keeps the best values seen before."""
        return {"last_step": self.last_step, "best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", -1))
        self.best = {k: float(v) for k, v in state.get("best", {}).items()}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.last_step = trainer.global_step
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        loss = m.get("val/loss")
        if (
            loss is not None
            and math.isfinite(loss)
            and loss < self.best.get("best/val/loss", math.inf)
        ):
            self.best = {"best/val/loss": loss, "best/step": float(trainer.global_step)}
            self.best.update({f"best/{k}": v for k, v in m.items() if k != "val/loss"})


def _loggers(cfg: RunConfig, run_dir: Path) -> list:
    from bench.tracking import make_wandb_logger

    loggers: list = [MetricsCSVLogger(run_dir)]
    wandb_logger = make_wandb_logger(cfg, run_dir)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    return loggers


_RUN_DIR_ENV = "BENCH_RUN_DIR"


def cluster_plugins(devices: int, env: dict[str, str] | None = None) -> list:
    """Lightning plugins for where this process runs.

    A sweep worker on Slurm is one task (``srun`` with one task per worker) that
    owns ``devices`` GPUs: a DDP trial's ranks are started by Lightning itself,
    on that node, as on a workstation. Lightning would otherwise read the Slurm
    task layout (one task) and refuse ``devices > 1``.
    """
    from lightning.fabric.plugins.environments import LightningEnvironment

    env = os.environ if env is None else env
    if devices > 1 and env.get("SLURM_NTASKS") == "1":
        return [LightningEnvironment()]
    return []


def _primary_process() -> bool:
    """False in the extra DDP ranks Lightning launches (they see LOCAL_RANK > 0)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def train_run(
    cfg: RunConfig,
    callbacks: Sequence[Callback] = (),
    *,
    resume: Path | None = None,
    command: str | None = None,
) -> RunResult:
    """Train one configuration and record it; see the module docstring.

    A preemption signal (:mod:`bench.preemption`, when the caller installed its
    handlers) checkpoints the run at the next step boundary, records it
    ``preempted`` and raises :class:`~bench.preemption.Preempted`; ``resume=run_dir``
    continues it exactly.
    """
    with PREEMPTION.deferred():
        return _train_run(cfg, callbacks, resume=resume, command=command)


def _train_run(
    cfg: RunConfig,
    callbacks: Sequence[Callback],
    *,
    resume: Path | None,
    command: str | None,
) -> RunResult:
    prep = prepare(cfg)
    cfg, dm = prep.cfg, prep.datamodule
    ckpt_path: Path | None = None
    start_step = 0
    if not _primary_process():
        # A DDP rank Lightning started by re-running the command: it trains in
        # step with rank 0 but leaves every record to it.
        run_dir = Path(os.environ[_RUN_DIR_ENV])
        ckpt_path = run_dir / records.LAST_CKPT if resume is not None else None
        start_step = checkpoint_step(ckpt_path) if ckpt_path else 0
    elif resume is not None:
        run_dir = Path(resume)
        ckpt_path = run_dir / records.LAST_CKPT
        if not ckpt_path.is_file():
            raise ConfigError(f"--resume {run_dir}: no checkpoint at {ckpt_path}")
        start_step = checkpoint_step(ckpt_path)
        records.truncate_metrics(run_dir, start_step)
    else:
        run_dir = new_run_dir(cfg)
        if (run_dir / records.STATUS).exists():
            raise ConfigError(f"tracking.run_dir={run_dir}: already holds a run (use --resume)")
        run_dir.mkdir(parents=True, exist_ok=True)
        records.atomic_write(run_dir / records.CONFIG, dump_yaml(cfg))
    if _primary_process():
        device = torch.cuda.get_device_name() if prep.accelerator == "gpu" else "cpu"
        records.write_json(
            run_dir / records.MANIFEST, records.manifest(cfg.train.seed, command, device)
        )
        records.write_status(run_dir, "running", started_step=start_step)
        os.environ[_RUN_DIR_ENV] = str(run_dir)  # the DDP ranks Lightning starts inherit it

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = BenchModule(cfg, dm.eval_lengths)
    train_set = dm.train_dataloader()
    loader = ResumableLoader(
        train_set.dataset, cfg.task.batch_size, train_set.collate_fn, seed=cfg.train.seed
    )
    loader.seek(start_step)
    tracker = _TrackValidation()
    t = cfg.train
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / records.CHECKPOINTS,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=t.checkpoint_every or t.val_every,
    )
    preemption = PreemptionCheckpoint(run_dir / records.LAST_CKPT)
    errors = DiagnosticErrors()  # a failing diagnostic is recorded, never fatal
    diagnostics = build_callbacks(cfg, run_dir, errors)
    loggers = _loggers(cfg, run_dir)
    progress = make_progress(cfg, run_dir) if _primary_process() else None
    trainer = L.Trainer(
        max_steps=t.max_steps,
        max_epochs=-1,
        val_check_interval=t.val_every,
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every,
        gradient_clip_val=t.grad_clip,
        precision=prep.precision,
        accelerator=prep.accelerator,
        devices=t.devices,
        strategy="ddp" if t.devices > 1 else "auto",
        plugins=cluster_plugins(t.devices),
        deterministic=t.deterministic,
        logger=loggers,
        callbacks=[
            checkpoint,
            tracker,
            *diagnostics,
            *callbacks,
            preemption,
            *([progress] if progress else []),
        ],
        enable_progress_bar=False,  # bench.progress counts steps, not an epoch's batches
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=run_dir,
    )
    primary = _primary_process()

    def record_status(*args, **kwargs) -> None:
        if primary:
            records.write_status(*args, **kwargs, diagnostic_errors=errors.messages)

    started = time.time()
    status, reason = "completed", ""
    try:
        trainer.fit(
            module,
            datamodule=_RunData(dm, loader),
            ckpt_path=ckpt_path,
            weights_only=True,  # never unpickle code (see bench.checkpoint)
        )
        if module.diverged:
            status, reason = "diverged", f"non-finite train/loss at step {trainer.global_step}"
        elif tracker.last_step != trainer.global_step:
            trainer.validate(module, datamodule=_RunData(dm, loader), verbose=False)
        if status == "completed" and trainer.global_step < t.max_steps:
            status, reason = "stopped", f"stopped early at step {trainer.global_step}"
    except Preempted as e:
        record_status(run_dir, "preempted", f"preempted ({e}); resumable", step=e.step)
        _finish_loggers(loggers, "failed")
        raise
    except SystemExit:
        # Lightning turns Ctrl-C into a graceful shutdown followed by sys.exit(1).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        record_status(run_dir, "interrupted", "interrupted (Ctrl-C)", step=trainer.global_step)
        _finish_loggers(loggers, "failed")
        raise RunInterrupted(run_dir) from None
    except BaseException as e:
        _fail(e, run_dir, record_status, loggers, trainer.global_step)

    metrics = _finite({k: float(v) for k, v in trainer.callback_metrics.items()})
    metrics.update(tracker.best)
    for cb in diagnostics:  # whole-run figures (e.g. mean tokens/s) beat the last logged ones
        if hasattr(cb, "summary"):
            metrics.update(_finite(cb.summary()))
    if status == "diverged":
        found = _diagnoses(cfg, run_dir, loggers, {"status": status}, errors) if primary else []
        record_status(run_dir, status, reason, step=trainer.global_step, diagnoses=found)
        _finish_loggers(loggers, "failed", summary=_diagnosis_keys(found))
        return RunResult(status, run_dir, metrics, reason, diagnoses=found)

    try:
        trainer.save_checkpoint(run_dir / records.LAST_CKPT)
    except Exception as e:
        _fail(e, run_dir, record_status, loggers, trainer.global_step)
    if cfg.diagnostics.landscape and trainer.is_global_zero:
        metrics.update(
            errors.call(
                "landscape",
                "end of run",
                lambda: _landscape(module, dm, run_dir, trainer, loggers),
                {},
            )
        )
    n_params = sum(p.numel() for p in module.model.parameters())
    baseline = dm.baseline()
    chance = baseline.as_dict()
    learning, learning_reason = judge_learning(chance, metrics, baseline.description)
    summary = {
        "status": status,
        "reason": reason,
        "steps": trainer.global_step,
        "wall_time": time.time() - started,
        "params": n_params,
        "world_size": trainer.world_size,  # processes that trained (DDP ranks)
        "metrics": metrics,
        "diagnostic_errors": errors.messages,  # "name: hook: Error: message" per failure
        "baseline": chance,
        "learning": {"status": learning, "reason": learning_reason},
    }
    found = _diagnoses(cfg, run_dir, loggers, summary, errors) if primary else []
    summary["diagnoses"] = found
    # W&B's summary already holds each logged key's min/last; add what only we know.
    extra = {k: v for k, v in metrics.items() if k.startswith("best/")}
    extra.update(steps=trainer.global_step, params=n_params, status=status)
    extra.update(learning=learning, learning_reason=learning_reason)
    extra.update(_diagnosis_keys(found))
    figures = run_dir / records.DIAGNOSTICS  # landscape, gradient heatmap, Hessian, ...
    _finish_loggers(
        loggers, "success", summary=extra, cfg=cfg, figures=figures, step=trainer.global_step
    )
    record_status(run_dir, status, reason, step=trainer.global_step)
    if primary:
        records.write_json(run_dir / records.SUMMARY, summary)  # last: it marks the run finished
    return RunResult(status, run_dir, metrics, reason, learning, learning_reason, found)


def _diagnoses(
    cfg: RunConfig, run_dir: Path, loggers: list, summary: dict, errors: DiagnosticErrors
) -> list[dict[str, str]]:
    """The diagnosis rules on this run's records (never fatal); online W&B gets an alert."""
    from bench.diagnostics.diagnoses import RunRecords, diagnose
    from bench.tracking import SafeWandbLogger, alert_diagnoses

    def find() -> list[dict[str, str]]:
        for lg in loggers:
            if isinstance(lg, MetricsCSVLogger):
                lg.save()  # metrics.csv holds every logged row before the rules read it
        rec = RunRecords(records.read_metrics(run_dir), cfg.flat(), summary, summary["status"])
        failed = lambda name, e: errors.record(f"diagnosis {name}", "end of run", e)  # noqa: E731
        return [d.as_dict() for d in diagnose(rec, on_error=failed)]

    found = errors.call("diagnoses", "end of run", find, [])
    for lg in loggers:
        if isinstance(lg, SafeWandbLogger):
            errors.call(
                "diagnoses",
                "W&B alert",
                lambda lg=lg: alert_diagnoses(lg, found, run_dir.name),
                False,
            )
    return found


def _diagnosis_keys(found: list[dict[str, str]]) -> dict[str, str]:
    from bench.tracking import diagnosis_summary

    return diagnosis_summary(found)


_WRITE_FAILED = ("file write failed", "No space left on device", "unexpected pos")


def _fail(e: BaseException, run_dir: Path, record_status, loggers: list, step: int) -> NoReturn:
    """Record a failed run as well as the disk allows, then raise (a full disk as OSError)."""
    reason = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    with contextlib.suppress(Exception):  # the disk may be full: the original error matters
        record_status(run_dir, "failed", reason, step=step)
    with contextlib.suppress(Exception):
        _finish_loggers(loggers, "failed")
    if isinstance(e, RuntimeError) and any(m in str(e) for m in _WRITE_FAILED):
        # torch.save reports a full disk as a RuntimeError of its zip writer
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir)) from e
    if isinstance(e, OSError) and not e.filename:  # e.g. a write(2) into a full disk
        raise OSError(e.errno, e.strerror, str(run_dir)) from e
    raise e


def _landscape(module: BenchModule, dm, run_dir: Path, trainer: L.Trainer, loggers: list) -> dict:
    """The end-of-run loss landscape; the trajectory's first snapshot is the init."""
    from bench.diagnostics.landscape import load_trajectory

    traj = load_trajectory(run_dir / records.DIAGNOSTICS / "trajectory.npz")
    summary = landscape_of(module, dm, run_dir, torch.from_numpy(traj.params[0]))
    for lg in loggers:
        lg.log_metrics(summary, step=trainer.global_step)
    return _finite(summary)


def _finish_loggers(
    loggers: list,
    outcome: str,
    summary: dict | None = None,
    cfg: RunConfig | None = None,
    figures: Path | None = None,
    step: int | None = None,
) -> None:
    """Close every logger (never fatal). W&B gets the final metrics and the cell's axes as
    summary keys (``cfg``) and the diagnostics' figures as images (``figures``)."""
    from bench.tracking import SafeWandbLogger, finish, summary_keys

    for lg in loggers:
        if isinstance(lg, SafeWandbLogger):
            if figures is not None and figures.is_dir():
                lg.log_figures(figures, step)
            if summary:
                lg.update_summary({**(summary_keys(cfg) if cfg is not None else {}), **summary})
            finish(lg, 0 if outcome == "success" else 1)
        else:
            lg.finalize(outcome)
