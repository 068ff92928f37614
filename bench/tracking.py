"""W&B set-up for one training run: mode, config, tags, metrics, failure safety.

:func:`make_wandb_logger` turns a :class:`~bench.config.RunConfig` into a
Lightning ``WandbLogger`` whose W&B files live in ``run_dir/wandb/``:

- ``tracking.mode`` picks the mode. ``offline`` (the default) needs no account
  and no network; ``online`` needs a login (``WANDB_API_KEY``, ``~/.netrc`` from
  ``wandb login``) and otherwise warns once and goes offline; ``disabled``
  returns None and writes nothing.
- The W&B config is ``cfg.flat()`` (``model.pos_encoding``, ...) plus
  ``meta.<key>`` for ``tracking.meta``; tags name every architecture axis value
  (``pos_encoding=rope``) and the preset (``variant=llama``).
- The run id is made once and kept in ``run_dir/wandb/run-id``: resuming the run
  (``bench train --resume``, a preempted sweep trial) continues the same W&B run
  (``resume="allow"``), so the dashboard shows one run, not a crashed one and a new one.
- ``val/loss`` keeps its minimum (and last value) in the summary; every metric
  is plotted against ``trainer/global_step``.

A tracking failure never fails training (DESIGN.md): if ``wandb.init`` raises,
we warn once and fall back online -> offline -> no logger; if W&B breaks later,
:class:`SafeWandbLogger` warns once and stops logging while training goes on.
Call :func:`finish` when the run ends, so the ``.wandb`` file is complete.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from bench import records, redact
from bench.config import RunConfig, TrackingMode, axes
from bench.wandb_settings import finish_run, has_wandb_login, wandb_settings

STEP_METRIC = "trainer/global_step"  # Lightning's WandbLogger logs the step under this key

# Summary aggregations per metric (W&B's define_metric): {"min": .., "last": ..} in the
# summary. Every other metric (train/loss, lr, ...) keeps W&B's default: its last value.
METRIC_SUMMARIES: dict[str, str] = {
    "val/loss": "min,last",
    "val/acc": "max,last",
    "val/exact_match": "max,last",
}

# Where a failed wandb.init goes next; None: no logger.
FALLBACK: dict[str, TrackingMode | None] = {"online": "offline", "offline": None}


class TrackingWarning(UserWarning):
    """W&B could not do what was asked; training goes on without (some of) it."""


_warned: set[str] = set()  # keys already warned about in this process


def _warn_once(key: str, message: str) -> None:
    """Warn with one line, once per process for each ``key`` (sweeps run many trials)."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, TrackingWarning, stacklevel=3)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# ----------------------------------------------------------------------------- what W&B gets


def wandb_config(cfg: RunConfig) -> dict[str, Any]:
    """The W&B config: flat ``section.key`` fields plus ``meta.<key>``."""
    # tracking.meta.* would repeat meta.*: keep the short form only.
    out = {k: v for k, v in cfg.flat().items() if not k.startswith("tracking.meta.")}
    out.update({f"meta.{k}": v for k, v in cfg.tracking.meta.items()})
    return out


def wandb_tags(cfg: RunConfig) -> list[str]:
    """``tracking.tags``, then ``axis=value`` for every model axis and the preset."""
    tags = list(cfg.tracking.tags)
    tags += [f"{axis}={getattr(cfg.model, axis)}" for axis in axes()]
    if cfg.variant:
        tags.append(f"variant={cfg.variant}")
    return list(dict.fromkeys(tags))  # unique, order kept


def summary_keys(cfg: RunConfig) -> dict[str, Any]:
    """Top-level summary keys a W&B workspace groups runs by: every model axis under its
    own name (``norm_placement``, ``pos_encoding``, ...), ``task``, ``variant`` and the
    sweep's ``tracking.meta`` (``cell``, ``phase``, ``trial``, ``seed``)."""
    out: dict[str, Any] = {axis: getattr(cfg.model, axis) for axis in axes()}
    out.update(task=cfg.task.name, variant=cfg.variant or "")
    out.update(cfg.tracking.meta)
    return out


def run_id(run_dir: Path, renew: bool = False) -> str:
    """The W&B run id of the run in ``run_dir``: made once, kept in ``records.WANDB_ID``.

    Every process that trains this run (the first, ``bench train --resume``, a
    sweep trial resumed after preemption) logs to the same W&B run. ``renew``
    makes a new one: after a failed start W&B keeps the old id "in use" in this
    process, so the offline fallback needs its own.
    """
    path = Path(run_dir) / records.WANDB_ID
    try:
        known = path.read_text().strip()
    except OSError:
        known = ""
    if known and not renew:
        return known
    new = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    records.atomic_write(path, new + "\n")
    return new


def _init_run(cfg: RunConfig, run_dir: Path, mode: TrackingMode, renew_id: bool = False) -> Any:
    import wandb

    if mode == "offline":
        # wandb-core reports its own errors over the network unless told not to;
        # offline means no network. Read once, when the first run starts wandb-core.
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    quiet_wandb_log_when_disk_full()  # wandb.init opens its log file
    t = cfg.tracking
    with redact.hidden_argv():  # wandb records sys.argv in the run's metadata
        run = wandb.init(
            mode=mode,
            id=run_id(run_dir, renew=renew_id),
            resume="allow",  # a resumed run (bench train --resume, a resumed trial) continues it
            dir=str(run_dir),
            project=t.project,
            entity=t.entity,
            group=t.group,
            job_type=t.job_type,
            name=t.name or run_dir.name,
            tags=wandb_tags(cfg),
            config=wandb_config(cfg),
            settings=wandb_settings(mode),
        )
    try:
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        for key, summary in METRIC_SUMMARIES.items():
            run.define_metric(key, summary=summary)
    except Exception:
        run.finish(exit_code=1)  # don't leave a half-set-up run open behind the fallback
        raise
    return run


def _is_wandb_disk_full(record: logging.LogRecord) -> bool:
    err = sys.exc_info()[1]
    return (
        record.name.partition(".")[0] == "wandb"
        and isinstance(err, OSError)
        and err.errno in records.DISK_FULL
    )


def quiet_wandb_log_when_disk_full() -> None:
    """Drop, silently, the W&B log records that a full disk keeps from being written.

    W&B logs to ``wandb/run-*/logs/debug.log`` from ``wandb.init`` on and from its
    own threads up to interpreter exit. On a full disk every record's ``flush``
    fails and logging's ``handleError`` prints ``--- Logging error ---`` with two
    tracebacks to stderr, dozens of lines around bench's one line ("no space left
    on the device"). Bench reports a full disk; W&B's log file does not need to.
    Only records of the ``wandb`` loggers that fail with ENOSPC/EDQUOT are dropped:
    other logging errors, and other loggers', are reported as before. Idempotent.
    """
    if getattr(logging.FileHandler.handleError, "_bench_quiet", False):
        return
    report = logging.FileHandler.handleError

    def handle_error(self: logging.FileHandler, record: logging.LogRecord) -> None:
        if not _is_wandb_disk_full(record):
            report(self, record)

    handle_error._bench_quiet = True  # type: ignore[attr-defined]
    setattr(logging.FileHandler, "handleError", handle_error)  # noqa: B010 (mypy: a method)


# ----------------------------------------------------------------------------- the logger


class SafeWandbLogger(WandbLogger):
    """A WandbLogger that cannot fail training.

    The first exception from W&B in any logging call (or ``finalize``) is turned
    into one :class:`TrackingWarning`; after it the logger does nothing. What
    was logged before stays in the run's ``.wandb`` file.

    Log through the logger's methods (``log_metrics``, ``log_image``, ...):
    direct ``logger.experiment.log(...)`` calls are not protected.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = False

    def _safe(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as e:
            self.failed = True  # so this warning is the only one from this logger
            warnings.warn(
                f"W&B {what} failed ({_one_line(e)}); W&B logging stops for this run, "
                "training goes on",
                TrackingWarning,
                stacklevel=3,
            )
            return None

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self._safe("log_metrics", super().log_metrics, metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        self._safe("log_hyperparams", super().log_hyperparams, params)

    def log_table(self, *args: Any, **kwargs: Any) -> None:
        self._safe("log_table", super().log_table, *args, **kwargs)

    def log_text(self, *args: Any, **kwargs: Any) -> None:
        self._safe("log_text", super().log_text, *args, **kwargs)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._safe("log_image", super().log_image, *args, **kwargs)

    def log_audio(self, *args: Any, **kwargs: Any) -> None:
        self._safe("log_audio", super().log_audio, *args, **kwargs)

    def log_video(self, *args: Any, **kwargs: Any) -> None:
        self._safe("log_video", super().log_video, *args, **kwargs)

    def watch(self, *args: Any, **kwargs: Any) -> None:
        self._safe("watch", super().watch, *args, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._safe("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._safe("finalize", super().finalize, status)

    def log_figures(self, folder: Path, step: int | None = None) -> list[str]:
        """Log every PNG in ``folder`` (a run's diagnostics) as ``diagnostics/<name>``; the keys."""
        keys = []
        for png in sorted(Path(folder).glob("*.png")):
            key = f"diagnostics/{png.stem}"
            self.log_image(key=key, images=[str(png)], step=step)
            keys.append(key)
        return keys

    def update_summary(self, values: Mapping[str, Any]) -> None:
        """Set final values (e.g. ``best/val/loss``) in the W&B run's summary."""
        self._safe("summary update", lambda: self.experiment.summary.update(dict(values)))

    def alert(self, title: str, text: str) -> bool:
        """A W&B alert (email/Slack), sent only by an online run; True if sent."""
        run = self.experiment
        if self.failed or getattr(run, "offline", True):
            return False
        self._safe("alert", run.alert, title=title[:63], text=text, level="WARN")
        return not self.failed

    def finish(self, exit_code: int = 0) -> None:
        """Close the W&B run (see :func:`finish`)."""
        finish(self, exit_code)


def _is_watch(d: Mapping[str, str]) -> bool:
    return d.get("kind") == "watch"  # records from before the symptom gate: diagnoses


def diagnosis_summary(diagnoses: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """W&B summary keys for a run's findings: ``diagnoses`` (the rules that fired as a
    diagnosis, comma-separated, ``none`` when none did) and ``diagnosis/<rule>`` (the
    evidence); ``watches`` and ``watch/<rule>`` likewise for the watches, when any."""
    real = [d for d in diagnoses if not _is_watch(d)]
    watches = [d for d in diagnoses if _is_watch(d)]
    out = {"diagnoses": ", ".join(d["rule"] for d in real) or "none"}
    out.update({f"diagnosis/{d['rule']}": d["evidence"] for d in real})
    if watches:
        out["watches"] = ", ".join(d["rule"] for d in watches)
        out.update({f"watch/{d['rule']}": d["evidence"] for d in watches})
    return out


def alert_diagnoses(
    logger: SafeWandbLogger, diagnoses: Sequence[Mapping[str, str]], run_name: str
) -> bool:
    """One W&B alert listing the diagnoses (not the watches), online only; True if sent."""
    diagnoses = [d for d in diagnoses if not _is_watch(d)]
    if not diagnoses:
        return False
    title = f"{run_name}: {', '.join(d['title'] for d in diagnoses)}"
    text = "\n".join(f"{d['title']}: {d['evidence']}; try {d['advice']}" for d in diagnoses)
    return logger.alert(title, text)


def make_wandb_logger(cfg: RunConfig, run_dir: Path) -> SafeWandbLogger | None:
    """The W&B logger for one run, or None when tracking is disabled or impossible.

    W&B files go to ``run_dir/wandb/``. Never raises for W&B reasons: an online
    run without a login, or a failing ``wandb.init``, warns once (one line)
    and falls back to offline, then to None.
    """
    mode: TrackingMode | None = cfg.tracking.mode
    if mode == "disabled":
        return None
    if mode == "online" and not has_wandb_login():
        _warn_once(
            "no-login",
            "W&B online mode needs a login (WANDB_API_KEY or `wandb login`); "
            "logging offline instead",
        )
        mode = "offline"
    run_dir = Path(run_dir)
    failed = False
    while mode is not None:
        nxt = FALLBACK[mode]
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            run = _init_run(cfg, run_dir, mode, renew_id=failed)
        except Exception as e:
            then = f"trying {nxt}" if nxt else "this run is not tracked in W&B"
            _warn_once(f"init:{mode}", f"W&B {mode} start failed ({_one_line(e)}); {then}")
            mode, failed = nxt, True
            continue
        return SafeWandbLogger(
            experiment=run,
            save_dir=str(run_dir),
            project=cfg.tracking.project,
            name=run.name,
        )
    return None


def finish(logger: WandbLogger | None, exit_code: int = 0) -> None:
    """Close the run behind ``logger`` (None is fine); 0 marks success, else failure.

    For offline runs the ``.wandb`` file is flushed and complete on return.
    Never raises for W&B reasons.
    """
    run = getattr(logger, "_experiment", None)  # don't create a run just to close it
    if run is None:
        return
    try:
        finish_run(run, exit_code)
    except Exception as e:
        warnings.warn(
            f"W&B finish failed ({_one_line(e)}); the run's records may be incomplete",
            TrackingWarning,
            stacklevel=2,
        )
