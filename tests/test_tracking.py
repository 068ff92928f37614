"""W&B set-up: real Lightning Trainers logging to real offline runs, read back from disk."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from wandb_runs import find_run_files, read_run

from bench import tracking
from bench.config import RunConfig, axes, build_run_config
from bench.tracking import (
    SafeWandbLogger,
    TrackingWarning,
    finish,
    has_wandb_login,
    make_wandb_logger,
    wandb_tags,
)

MAX_STEPS = 6


class TinyRegression(L.LightningModule):
    """A linear model on random data that logs train/loss every step and val/loss."""

    def __init__(self, break_wandb_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.break_wandb_at = break_wandb_at
        self.train_losses: list[tuple[int, float]] = []  # (global_step, loss) as logged
        self.val_losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        if self.global_step == self.break_wandb_at:
            self.logger.experiment.finish()  # W&B goes away underneath the logger
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        self.train_losses.append((self.global_step, loss.item()))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("val/loss", loss)
        self.val_losses.append(loss.item())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return DataLoader(TensorDataset(x, y), batch_size=8)  # 4 batches: 1 val batch per check


def _train(model: TinyRegression, logger: SafeWandbLogger | None, root: Path) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=MAX_STEPS,
        val_check_interval=2,
        limit_val_batches=1,
        check_val_every_n_epoch=None,
        log_every_n_steps=1,
        logger=logger if logger is not None else False,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )
    trainer.fit(model, _loader(), _loader())
    return trainer


@pytest.fixture(autouse=True)
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B credentials: no key in the environment, and a netrc path in tmp."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(tracking, "_warned", set())  # "once per process" starts afresh


def _config(**overrides: object) -> RunConfig:
    base = {
        "model.pos_encoding": "rope",
        "variant": "llama",
        "tracking.group": "sweep-a",
        "tracking.job_type": "tune",
        "tracking.tags": ["smoke"],
        "tracking.meta": {"cell": "rope-pre", "trial": 7},
    }
    return build_run_config(overrides={**base, **overrides})


def _tracking_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, TrackingWarning)]


# ----------------------------------------------------------------------------- a full run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TinyRegression, Path]]:
    """One offline run of a real Trainer, finished, for the tests below to read."""
    run_dir = tmp_path_factory.mktemp("runs") / "run-0001"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETRC", str(run_dir.parent / "no-netrc"))
        logger = make_wandb_logger(_config(), run_dir)
        assert logger is not None
        model = TinyRegression()
        _train(model, logger, run_dir)
        finish(logger)
    yield model, run_dir


def test_wandb_files_live_in_the_run_directory(trained: tuple[TinyRegression, Path]) -> None:
    _, run_dir = trained
    (path,) = find_run_files(run_dir)
    assert path.parent.parent == run_dir / "wandb"
    assert path.parent.name.startswith("offline-run-")


def test_config_has_flat_keys_and_meta(trained: tuple[TinyRegression, Path]) -> None:
    _, run_dir = trained
    run = read_run(run_dir)
    cfg = _config()
    assert run.config["model.pos_encoding"] == "rope"
    assert run.config["variant"] == "llama"
    assert run.config["meta.cell"] == "rope-pre" and run.config["meta.trial"] == 7
    assert not any(k.startswith("tracking.meta") for k in run.config)
    for key, value in cfg.flat().items():
        if not key.startswith("tracking.meta"):
            assert run.config[key] == value, key


def test_run_has_group_job_type_name_and_axis_tags(trained: tuple[TinyRegression, Path]) -> None:
    _, run_dir = trained
    run = read_run(run_dir)
    assert (run.project, run.group, run.job_type) == ("bench", "sweep-a", "tune")
    assert run.name == "run-0001"
    assert run.tags[0] == "smoke"
    for tag in ("pos_encoding=rope", "norm_placement=pre", "arch=decoder", "variant=llama"):
        assert tag in run.tags
    assert run.exit_code == 0


def test_train_loss_history_matches_what_was_logged(trained: tuple[TinyRegression, Path]) -> None:
    model, run_dir = trained
    run = read_run(run_dir)
    assert len(model.train_losses) == MAX_STEPS
    steps, losses = zip(*run.series("train/loss"), strict=True)
    # Lightning logs a training step's metrics under the global step that computed them.
    assert list(steps) == [step for step, _ in model.train_losses]
    assert list(losses) == pytest.approx([loss for _, loss in model.train_losses])
    assert run.summary["train/loss"] == pytest.approx(model.train_losses[-1][1])


def test_summary_keeps_the_minimum_val_loss(trained: tuple[TinyRegression, Path]) -> None:
    model, run_dir = trained
    run = read_run(run_dir)
    logged = [value for _, value in run.series("val/loss")]
    assert logged == pytest.approx(model.val_losses)
    assert run.summary["val/loss"]["min"] == pytest.approx(min(model.val_losses))
    assert run.summary["val/loss"]["last"] == pytest.approx(model.val_losses[-1])
    assert run.metric_defs["val/loss"].summary == ["min", "last"]


# ----------------------------------------------------------------------------- modes


def test_online_without_login_falls_back_to_offline_with_one_warning(tmp_path: Path) -> None:
    cfg = _config(**{"tracking.mode": "online"})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loggers = [make_wandb_logger(cfg, tmp_path / f"run-{i}") for i in range(2)]
        for logger in loggers:
            finish(logger)
    assert len(_tracking_warnings(record)) == 1
    assert "online" in _tracking_warnings(record)[0] and "offline" in _tracking_warnings(record)[0]
    for i in range(2):
        (path,) = find_run_files(tmp_path / f"run-{i}")
        assert path.parent.name.startswith("offline-run-")
        assert read_run(path).finished


_ONLINE_SCRIPT = """
import json, sys, warnings
from pathlib import Path
from bench.config import build_run_config
from bench.tracking import TrackingWarning, finish, has_wandb_login, make_wandb_logger

with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    cfg = build_run_config(overrides={"tracking.mode": "online"})
    logger = make_wandb_logger(cfg, Path(sys.argv[1]))
    finish(logger)
messages = [str(w.message) for w in record if issubclass(w.category, TrackingWarning)]
print(json.dumps({"login": has_wandb_login(), "logger": logger is not None, "warnings": messages}))
"""


@pytest.mark.slow  # a fresh Python process: torch and Lightning imports dominate
def test_failed_online_start_falls_back_to_offline(tmp_path: Path) -> None:
    # wandb reads WANDB_* variables once per process, so this runs in a fresh one:
    # a credential that looks valid and a W&B server address on loopback where
    # nothing listens, so wandb.init really fails (connection refused until timeout).
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env |= {
            "WANDB_BASE_URL": f"http://127.0.0.1:{reserved.getsockname()[1]}",
            "WANDB_API_KEY": "k" * 40,
            "WANDB_INIT_TIMEOUT": "2",
            "WANDB_ERROR_REPORTING": "false",
            "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
            "NETRC": str(tmp_path / "no-netrc"),
        }
        done = subprocess.run(
            [sys.executable, "-c", _ONLINE_SCRIPT, str(tmp_path / "run")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["login"] and out["logger"]
    (message,) = out["warnings"]
    assert "online start failed" in message and "trying offline" in message
    assert "\n" not in message
    runs = find_run_files(tmp_path / "run")
    offline = [p for p in runs if p.parent.name.startswith("offline-run-")]
    assert len(offline) == 1 and read_run(offline[0]).finished


def test_finish_leaves_a_complete_file_with_the_exit_code(tmp_path: Path) -> None:
    # wandb-core writes the file's last block after run.finish() returns; finish waits for it.
    loggers = [make_wandb_logger(_config(), tmp_path / f"run-{i}") for i in range(3)]
    for code, logger in enumerate(loggers):
        assert logger is not None
        logger.log_metrics({"train/loss": float(code)}, step=code)
        logger.update_summary({"best/val/loss": code / 2})
        finish(logger, exit_code=code)
        run = read_run(tmp_path / f"run-{code}")
        assert run.exit_code == code
        assert run.series("train/loss") == [(code, float(code))]
        assert run.summary["best/val/loss"] == code / 2


def test_disabled_returns_none_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        logger = make_wandb_logger(_config(**{"tracking.mode": "disabled"}), run_dir)
        finish(logger)
    assert logger is None
    assert not run_dir.exists()
    assert _tracking_warnings(record) == []


def test_offline_start_failure_leaves_the_run_untracked(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "wandb").write_text("a file where W&B needs its directory")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        logger = make_wandb_logger(_config(), run_dir)
    assert logger is None
    (message,) = _tracking_warnings(record)
    assert "offline start failed" in message and "not tracked" in message


def test_login_is_found_in_env_or_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not has_wandb_login()
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {'a' * 40}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert has_wandb_login()
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert has_wandb_login()


def test_tags_name_every_model_axis_once() -> None:
    tags = wandb_tags(_config(**{"tracking.tags": ["smoke", "arch=decoder"]}))
    assert tags[:2] == ["smoke", "arch=decoder"]
    assert len(tags) == len(set(tags))
    assert {t.split("=")[0] for t in tags if t != "smoke"} == {*axes(), "variant"}


# ----------------------------------------------------------------------------- failures


def test_wandb_failing_mid_run_does_not_fail_training(tmp_path: Path) -> None:
    logger = make_wandb_logger(_config(), tmp_path)
    assert logger is not None
    model = TinyRegression(break_wandb_at=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer = _train(model, logger, tmp_path)
        finish(logger, exit_code=0)
    assert trainer.global_step == MAX_STEPS
    assert logger.failed
    (message,) = _tracking_warnings(record)
    assert "log_metrics failed" in message and "training goes on" in message
    run = read_run(tmp_path)
    # What was logged before W&B went away is on disk; nothing after it.
    losses = [loss for _, loss in run.series("train/loss")]
    assert losses == pytest.approx([loss for _, loss in model.train_losses[:3]])
    assert len(model.train_losses) == MAX_STEPS


def _log_to_full_device(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Log one record through a FileHandler on /dev/full (every write: ENOSPC); stderr."""
    tracking.quiet_wandb_log_when_disk_full()
    logger = logging.getLogger(name)
    handler = logging.FileHandler("/dev/full")
    logger.addHandler(handler)
    try:
        capsys.readouterr()
        logger.error("a record that cannot be written")
        return capsys.readouterr().err
    finally:
        logger.removeHandler(handler)
        with contextlib.suppress(OSError):
            handler.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_wandb_log_records_a_full_disk_cannot_take_are_dropped_silently(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _log_to_full_device("wandb.sdk.lib.asyncio_manager", capsys) == ""
    # any other logger's failing handler still reports, as logging does by default
    other = _log_to_full_device("someone.else", capsys)
    assert "--- Logging error ---" in other and "No space left on device" in other
