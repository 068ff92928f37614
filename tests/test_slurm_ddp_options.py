"""Workers of several Slurm tasks, without a cluster: the options they become, the checks
that refuse a bad layout before anything is submitted, and the task-0 store's protocol.

The real run (a 2-task DDP worker on a one-node cluster) is in ``tests/test_slurm.py``.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from sweep_helpers import assert_refused_in_one_line, tiny_spec, write_spec

from bench.cli import main
from bench.config import ConfigError
from bench.sweeps.slurm.checks import check_devices
from bench.sweeps.slurm.ddp_tasks import DONE, Leader, TaskLayout, control_port, follow
from bench.sweeps.slurm.options import executor_parameters, launcher_options, sbatch_options
from bench.sweeps.spec import LauncherSpec, parse_spec
from bench.training.cluster import check_layout, cluster_plugins, processes_here, started_by_slurm

SLURM_TASK = {
    "SLURM_PROCID": "1",
    "SLURM_NTASKS": "8",
    "SLURM_NNODES": "2",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NODELIST": "gpu[07-08]",
    "SLURM_JOB_ID": "4312345",
    "SLURM_JOB_NAME": "bench-x",
}


def test_two_nodes_of_four_gpu_tasks_become_nodes_tasks_per_node_and_gres_per_node():
    spec = parse_spec(tiny_spec())
    opts = launcher_options(
        spec, {"nodes": 2, "tasks_per_node": 4, "gpus_per_worker": 8, "cpus_per_worker": 64}
    )
    assert (opts.ranks, opts.gpus_per_node, opts.cpus_per_task) == (8, 4, 8)
    assert sbatch_options(opts)[:3] == ["--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8"]
    assert "--gres=gpu:4" in sbatch_options(opts)  # --gres counts GPUs per node
    # A one-task worker is what it was: one task, one CPU, all its GPUs on its node.
    one = launcher_options(spec, {"gpus_per_worker": 2})
    assert sbatch_options(one) == [
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=1",
        "--gres=gpu:2",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--nodes", "0"], ["--nodes=0", "greater than or equal to 1"]),
        (["--tasks-per-node", "0"], ["--tasks-per-node=0", "greater than or equal to 1"]),
        (
            ["--tasks-per-node", "2", "--gpus-per-worker", "4"],
            ["--gpus-per-worker=4 does not match --nodes=1 x --tasks-per-node=2", "one GPU"],
        ),
        (
            ["--nodes", "2", "--gpus-per-worker", "4"],
            ["--gpus-per-worker=4 does not match --nodes=2 x --tasks-per-node=1 = 2 tasks"],
        ),
        (
            ["--tasks-per-node", "2", "--cpus-per-worker", "3"],
            ["--cpus-per-worker=3 does not split over", "a multiple of 2"],
        ),
    ],
)
def test_a_bad_worker_layout_is_one_line_and_exit_2_before_anything_is_submitted(
    tmp_path, capsys, monkeypatch, args, words
):
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")  # reaching sbatch would say "no sbatch here"
    code = main(["sweep", str(spec), "--out", "sweep", "--launcher", "slurm", *args])
    assert_refused_in_one_line(code, capsys.readouterr().err.strip(), words, tmp_path)


def test_a_spec_whose_devices_or_nodes_contradict_the_workers_tasks_is_refused():
    base = tiny_spec()["base"]
    two_tasks = LauncherSpec(name="slurm", tasks_per_node=2)
    for train, ok in (({}, True), ({"devices": 2}, True), ({"devices": 4}, False)):
        spec = parse_spec({**tiny_spec(), "base": {**base, "train": {**base["train"], **train}}})
        if ok:
            check_devices(spec, two_tasks)
        else:
            with pytest.raises(ConfigError, match=r"train.devices=4: a worker of --nodes=1 x"):
                check_devices(spec, two_tasks)
    spec = parse_spec({**tiny_spec(), "base": {**base, "train": {**base["train"], "nodes": 2}}})
    with pytest.raises(ConfigError, match=r"train.nodes=2: a worker of one task runs on one node"):
        check_devices(spec, LauncherSpec(name="slurm"))
    check_devices(spec, LauncherSpec(name="slurm", nodes=2))


def test_a_slurm_task_reads_its_rank_layout_and_the_first_node_from_slurms_environment():
    layout = TaskLayout.from_slurm(SLURM_TASK)
    assert (layout.rank, layout.world, layout.nodes, layout.per_node) == (1, 8, 2, 4)
    assert layout.host == "gpu07"  # rank 0's node: Lightning's MASTER_ADDR too
    assert layout.overrides == {"train.nodes": 2, "train.devices": 4}
    # Lightning's port for this job is 15000 + 2345; the control store sits 10000 above.
    assert layout.port == control_port(SLURM_TASK) == 27345
    assert control_port({**SLURM_TASK, "MASTER_PORT": "29500"}) == 39500
    with pytest.raises(ConfigError, match=r"--ddp-tasks: not a task of a Slurm job step"):
        TaskLayout.from_slurm({"SLURM_PROCID": "0"})
    with pytest.raises(ConfigError, match=r"SLURM_NTASKS=8 is not SLURM_NNODES=2 x"):
        TaskLayout.from_slurm({**SLURM_TASK, "SLURM_NTASKS_PER_NODE": "3"})


def test_lightning_starts_the_ranks_unless_slurm_already_started_one_task_per_rank():
    assert started_by_slurm(4, 2, SLURM_TASK)
    assert processes_here(4, 2, SLURM_TASK) == 1  # each task is one rank: one CPU slot's worth
    assert not started_by_slurm(4, 1, SLURM_TASK)  # 4 ranks asked, 8 tasks: not this layout
    assert not started_by_slurm(4, 2, {**SLURM_TASK, "SLURM_JOB_NAME": "interactive"})
    assert processes_here(2, 1, {}) == 2
    assert [type(p).__name__ for p in cluster_plugins(4, 2, SLURM_TASK)] == ["SLURMEnvironment"]
    assert cluster_plugins(4, 2, SLURM_TASK)[0].auto_requeue is False  # the worker requeues
    one_task = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bench-x"}
    assert [type(p).__name__ for p in cluster_plugins(2, 1, one_task)] == ["LightningEnvironment"]
    check_layout(4, 2, SLURM_TASK)
    with pytest.raises(ConfigError, match=r"train.nodes=2: no other node can join this run"):
        check_layout(1, 2, {})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_signals():
    """``follow`` installs the worker's preemption handlers; put this process's back after."""
    import signal

    from bench.training.preemption import PREEMPTION, SIGNALS

    old = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    PREEMPTION.reset()
    PREEMPTION.installed = False
    for s, h in old.items():
        signal.signal(s, h)


def test_a_follower_stops_when_task_0_says_done_and_when_task_0_is_gone(own_signals):
    """The real store, two tasks in one process (the follower in the main thread, where it
    installs its signal handlers): ``done`` ends it with 0 and task 0 sees it leave; a store
    that goes away ends it with 1 instead of leaving it waiting for ever."""
    layout = TaskLayout(rank=1, world=2, nodes=1, per_node=2, host="127.0.0.1", port=_free_port())
    leader = Leader(TaskLayout(0, 2, 1, 2, layout.host, layout.port))
    closer = threading.Thread(target=leader.close)
    closer.start()
    assert follow(layout) == 0
    closer.join(timeout=30)
    assert leader.store.get("trial/1").decode() == DONE
    assert leader.store.add("left", 0) == 1

    layout = TaskLayout(1, 2, 1, 2, "127.0.0.1", _free_port())
    gone = Leader(TaskLayout(0, 2, 1, 2, layout.host, layout.port))

    def drop() -> None:
        time.sleep(1.0)
        gone.store = None  # the store server shuts down with its last reference

    threading.Thread(target=drop).start()
    started = time.time()
    assert follow(layout) == 1
    assert time.time() - started < 20


def test_a_taken_control_port_is_one_line_naming_the_port_and_what_to_set():
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot serve the trials' store on port {port} "):
            Leader(TaskLayout(0, 2, 1, 2, "127.0.0.1", port))


@pytest.mark.skipif(shutil.which("srun") is None, reason="submitit's SlurmExecutor needs srun")
def test_submitit_writes_the_nodes_tasks_and_gres_into_the_batch_script(tmp_path):
    import submitit

    spec = parse_spec(tiny_spec())
    opts = launcher_options(
        spec, {"nodes": 2, "tasks_per_node": 4, "gpus_per_worker": 8, "cpus_per_worker": 64}
    )
    executor = submitit.SlurmExecutor(folder=tmp_path)
    executor.update_parameters(**executor_parameters(opts, "bench-x"))
    script = executor._make_submission_file_text("python -m x", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gres=gpu:4", "--cpus-per-task=8"):
        assert f"#SBATCH {line}" in script, script
    # submitit starts every task under srun: each one runs the pickled worker.
    assert "srun" in script
