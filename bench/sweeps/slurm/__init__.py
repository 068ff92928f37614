"""Sweeps on a Slurm cluster: the launcher (``launcher.py``: submit N workers as one job
array, their states, cancel), its options to sbatch and submitit (``options.py``), the
checks before submitting (``checks.py``: shared storage, ``sbatch --test-only``,
devices) and a worker of several Slurm tasks training each trial as DDP ranks
(``ddp_tasks.py``).
"""
