"""A worker of several Slurm tasks: task 0 claims each trial, every task trains it as one DDP rank.

``bench sweep --launcher slurm --nodes N --tasks-per-node M`` (N x M > 1) makes each
worker one Slurm job whose N x M tasks all run ``bench worker --ddp-tasks``. Task 0
(``SLURM_PROCID`` 0) is the worker as always: it claims a trial from Optuna, trains it
as DDP rank 0 and alone tells the study and writes the run's records. Every other task
is a *follower*: it trains the same trial as another rank (Lightning's
``SLURMEnvironment``: world size ``SLURM_NTASKS``, rank ``SLURM_PROCID``, main address
the job's first node) and never opens the storage, like Lightning's extra ranks in
:mod:`bench.sweeps.ddp`.

Task 0 tells the followers which trial through a :class:`torch.distributed.TCPStore`
that it hosts on the job's first node (where rank 0 runs), on :func:`control_port`:

- ``trial/K``: the K-th trial (its RunConfig, prune metric, run directory, whether it
  resumes), or ``done`` when the worker stops;
- ``trained/K``: each follower adds 1 when it has left trial K; task 0 waits for all
  of them before it claims the next trial, so a rank still in trial K never joins
  trial K+1's rendezvous;
- ``left``: each follower adds 1 as it exits; task 0 keeps the store up until then.

A follower whose task 0 is gone (the store does not answer) stops with exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.config import ConfigError, RunConfig

CONTROL_PORT_OFFSET = 10000  # above Lightning's MASTER_PORT (15000 + the job id's last 4 digits)
CONNECT_TIMEOUT = 600.0  # s a follower waits for task 0's store (task 0 imports torch first)
TRAINED_TIMEOUT = 1800.0  # s task 0 waits for the followers to leave a trial (gloo's default)
POLL = 0.2  # s between a waiting task's looks at the store
DONE = "done"


@dataclass(frozen=True)
class TaskLayout:
    """This task's place in the worker's job step, from Slurm's environment."""

    rank: int
    world: int
    nodes: int
    per_node: int
    host: str  # the job's first node: rank 0, the store, Lightning's MASTER_ADDR
    port: int

    @classmethod
    def from_slurm(cls, env: Mapping[str, str] | None = None) -> TaskLayout:
        """Read ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_NNODES``, ``SLURM_NTASKS_PER_NODE``
        and ``SLURM_NODELIST``; one line (ConfigError) when this is not such a job step."""
        env = os.environ if env is None else env
        names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE")
        missing = [n for n in names if not env.get(n, "").isdigit()]
        if missing:
            raise ConfigError(
                f"--ddp-tasks: not a task of a Slurm job step with --ntasks-per-node "
                f"({', '.join(missing)} unset); run it under srun, or leave --ddp-tasks out"
            )
        world, nodes, per_node = (int(env[n]) for n in names[1:])
        if world != nodes * per_node:
            raise ConfigError(
                f"--ddp-tasks: SLURM_NTASKS={world} is not SLURM_NNODES={nodes} x "
                f"SLURM_NTASKS_PER_NODE={per_node}; give sbatch --nodes and --ntasks-per-node"
            )
        host = env.get("MASTER_ADDR") or first_node(env.get("SLURM_NODELIST", "127.0.0.1"))
        return cls(int(env["SLURM_PROCID"]), world, nodes, per_node, host, control_port(env))

    @property
    def overrides(self) -> dict[str, int]:
        """What every trial of this worker runs on: these nodes, these tasks a node."""
        return {"train.nodes": self.nodes, "train.devices": self.per_node}


def first_node(nodelist: str) -> str:
    """The first host of a Slurm node list (Lightning's own reading, so both agree)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.resolve_root_node_address(nodelist)


def control_port(env: Mapping[str, str]) -> int:
    """Lightning's main port (``MASTER_PORT``, else 15000 + the job id's last 4 digits) + 10000:
    unique to the job as Lightning's is, never one of Lightning's."""
    if env.get("MASTER_PORT", "").isdigit():
        return int(env["MASTER_PORT"]) + CONTROL_PORT_OFFSET
    job = env.get("SLURM_JOB_ID", "")
    return (int(job[-4:]) if job.isdigit() else 2910) + 15000 + CONTROL_PORT_OFFSET


def _store(layout: TaskLayout, master: bool) -> Any:
    from torch.distributed import TCPStore

    return TCPStore(
        layout.host,
        layout.port,
        layout.world,
        is_master=master,
        timeout=timedelta(seconds=CONNECT_TIMEOUT),
        wait_for_workers=False,
    )


class Leader:
    """Task 0's side: announce each trial, wait for the followers to leave it, then stop them."""

    def __init__(self, layout: TaskLayout) -> None:
        from torch.distributed import DistError

        self.layout = layout
        try:
            self.store = _store(layout, master=True)
        except DistError as e:
            raise ConfigError(
                f"--ddp-tasks: cannot serve the trials' store on port {layout.port} "
                f"({str(e).splitlines()[0]}); set MASTER_PORT to a free port below 55535"
            ) from None
        self.k = 0  # trials announced
        self.waited = 0  # trials every follower has left

    def announce(self, cfg: RunConfig, metric: str, resume: Path | None) -> None:
        """Trial K+1 for the followers (its config as data: no shared file needed)."""
        self.wait_trained()
        self.k += 1
        trial = {
            "config": cfg.model_dump(mode="json"),
            "metric": metric,
            "run_dir": str(cfg.tracking.run_dir),
            "resume": resume is not None,
        }
        self.store.set(f"trial/{self.k}", json.dumps(trial))

    def wait_trained(self, timeout: float = TRAINED_TIMEOUT) -> None:
        """Until every follower has left the last announced trial."""
        if self.waited == self.k:
            return
        others, deadline = self.layout.world - 1, time.time() + timeout
        while self.store.add(f"trained/{self.k}", 0) < others:
            if time.time() > deadline:
                raise RuntimeError(
                    f"DDP followers did not leave trial {self.k} within {timeout:.0f} s "
                    "(a task died or hangs); this worker stops"
                )
            time.sleep(POLL)
        self.waited = self.k

    def close(self, timeout: float = 60.0) -> None:
        """Tell the followers to stop and keep the store up until they have read it."""
        self.k += 1
        self.store.set(f"trial/{self.k}", DONE)
        deadline = time.time() + timeout
        while self.store.add("left", 0) < self.layout.world - 1 and time.time() < deadline:
            time.sleep(POLL)


def follow(layout: TaskLayout) -> int:
    """A follower task's life: train each trial task 0 announces, until ``done``; exit code."""
    from torch.distributed import DistError

    from bench.sweeps.args import EXIT_PREEMPTED
    from bench.sweeps.ddp import ddp_isolated, train_as_follower
    from bench.training.preemption import PREEMPTION, Preempted
    from bench.training.rundir import RUN_DIR_ENV

    PREEMPTION.install()  # Slurm signals every task; all ranks stop at the same step
    try:
        store = _store(layout, master=False)
    except DistError as e:
        where = f"{layout.host}:{layout.port}"
        print(f"rank {layout.rank}: no store of task 0 at {where} ({e}); stopping", file=sys.stderr)
        return 1
    k = 0
    try:
        while True:
            k += 1
            key = f"trial/{k}"
            while not store.check([key]):
                time.sleep(POLL)
            raw = store.get(key).decode()
            if raw == DONE:
                return 0
            trial = json.loads(raw)
            print(f"rank {layout.rank}: trial {k}, {trial['run_dir']}", file=sys.stderr)
            os.environ[RUN_DIR_ENV] = trial["run_dir"]
            resume = Path(trial["run_dir"]) if trial["resume"] else None
            try:
                with ddp_isolated():  # the next trial starts its own process group
                    cfg = RunConfig.model_validate(trial["config"])
                    train_as_follower(cfg, trial["metric"], resume)
            except Preempted:
                return EXIT_PREEMPTED
            except Exception as e:  # rank 0 records the trial's failure; go on with the next
                print(f"rank {layout.rank}, trial {k}: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                store.add(f"trained/{k}", 1)
    except DistError as e:
        print(f"rank {layout.rank}: task 0's store is gone ({e}); stopping", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(DistError):
            store.add("left", 1)
