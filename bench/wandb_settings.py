"""How bench starts and ends W&B runs, without Lightning: settings, login, finishing.

:mod:`bench.tracking` (a training run's Lightning logger), the sweep-level run
(:mod:`bench.sweeps.progress.wandb_run`) and ``bench report --wandb``
(:mod:`bench.report.publish`) share these, so the processes that only write a
sweep's or a report's W&B run do not load Lightning for them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench.wandb_file import wait_until_closed

FINISH_TIMEOUT = 30.0  # seconds to wait for wandb-core to close a run's .wandb file

# Our defaults for wandb.Settings, per mode. Quiet, no console capture, and offline
# nothing that costs start-up time or CPU (system stats, machine metadata, git,
# requirements.txt): the run directory's manifest.json already records those.
_QUIET: dict[str, Any] = {
    "silent": True,
    "console": "off",
    "save_code": False,
    "disable_job_creation": True,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "offline": {
        **_QUIET,
        "init_timeout": 30.0,
        "disable_git": True,
        "x_disable_stats": True,
        "x_disable_meta": True,
        "x_disable_machine_info": True,
        "x_save_requirements": False,
    },
    # Online users watch dashboards: keep system metrics (GPU utilisation) and metadata.
    "online": {**_QUIET, "init_timeout": 60.0},
}

# The module of W&B Launch that stages a launch job's inputs before a run starts.
LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


def has_wandb_login() -> bool:
    """True if W&B credentials exist: ``WANDB_API_KEY`` / identity token, or netrc.

    Looks only at local files and the environment (never the network).
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        return bool(read_netrc_auth(host=host))
    except Exception:  # a malformed key or netrc is no usable login
        return False


def _env_var(setting: str) -> str:
    """The environment variable wandb reads for a setting (``x_foo`` -> ``WANDB__FOO``)."""
    if setting.startswith("x_"):
        return "WANDB__" + setting[2:].upper()
    return "WANDB_" + setting.upper()


def wandb_settings(mode: str) -> Any:
    """``wandb.Settings`` for ``mode``: our defaults, except where the user set a WANDB_* variable.

    Called before every ``wandb.init`` of bench, so it also makes that init skip W&B
    Launch's inputs when none can have been staged (:func:`skip_unstaged_launch_inputs`).
    """
    import wandb

    skip_unstaged_launch_inputs()
    chosen = {k: v for k, v in SETTINGS[mode].items() if _env_var(k) not in os.environ}
    # "create_new": runs of one process stay independent; nothing finishes a run behind our back.
    return wandb.Settings(reinit="create_new", **chosen)


def skip_unstaged_launch_inputs() -> None:
    """Make ``wandb.init`` import W&B Launch's input module only when inputs may be staged.

    Every ``wandb.init`` applies the inputs a W&B Launch job staged before the run
    (``Run._detect_and_apply_job_inputs``) by importing :data:`LAUNCH_INPUTS`, which
    pulls in Launch's agent and the public API. Their pydantic models read their
    docstrings through ``inspect``, which walks every loaded module: with torch and
    Lightning loaded that import cost 0.9 s of CPU (0.24 s without), in every worker
    process and at the end of every ``bench sweep``. Inputs can only be staged through
    that module, so while it is not imported there is nothing to apply; once it is
    (a Launch job), W&B's own method runs. Idempotent; if W&B's internals differ, nothing
    changes.
    """
    try:
        from wandb.sdk import wandb_run
    except ImportError:
        return
    original = getattr(wandb_run.Run, "_detect_and_apply_job_inputs", None)
    if original is None or getattr(original, "_bench_skip", False):
        return

    def detect_and_apply_job_inputs(self: Any) -> None:
        if LAUNCH_INPUTS in sys.modules:
            original(self)

    detect_and_apply_job_inputs._bench_skip = True  # type: ignore[attr-defined]
    setattr(wandb_run.Run, "_detect_and_apply_job_inputs", detect_and_apply_job_inputs)  # noqa: B010


def finish_run(run: Any, exit_code: int) -> None:
    """``run.finish`` and wait for wandb-core to write the end of the ``.wandb`` file.

    ``finish`` returns once the exit record is queued; the file's last block is
    written when wandb-core closes the stream, a moment later (asynchronously).
    """
    sync_file = getattr(run.settings, "sync_file", None)
    run.finish(exit_code=exit_code)  # a no-op if the run was already finished
    if sync_file and not wait_until_closed(sync_file, FINISH_TIMEOUT):
        raise TimeoutError(f"{sync_file} was not closed within {FINISH_TIMEOUT:.0f} s")
