"""What assembles and runs a training run.

``run.train_run(RunConfig) -> RunResult`` is the only place a run is assembled
(``bench train``, every sweep trial and the tests call it): ``prepare`` validates
the config against its data, ``rundir`` opens the run directory, ``trainer``
builds the Lightning Trainer and ``finish`` records the outcome. Around it: the
LightningModule (``module``), the resumable loader (``loader``), ``metrics.csv``
(``csvlog``), safe checkpoint reading (``checkpoint``), the will-it-fit check
(``resources``), preemption signals (``preemption``) and what ``bench train``
shows while it runs (``progress``).

This ``__init__`` imports nothing, so ``bench.training.resources`` and
``bench.training.checkpoint`` stay cheap to import (no Lightning).
"""
