"""Published findings about architecture choices as data, and ``bench reproduce``.

A claim is one YAML file in ``sweeps/claims/`` (shipped as ``bench/claims/files``):
the citation, the paper's statement in one sentence, why this size, an ordinary
compare sweep that tests it, the metrics and the decision rule, fixed before the
runs they judge. ``bench reproduce`` runs each claim's sweep (resumable like any
sweep) and writes one report with a verdict per claim: reproduced, not reproduced
or inconclusive, each with its reason.

- :mod:`bench.claims.spec`: the claim file's schema (pydantic) and loading;
- :mod:`bench.claims.metrics`: one number per run (or per seed of a group) from a
  sweep's records;
- :mod:`bench.claims.rules`: the registered tests (``better``, ``not_worse``,
  ``gap_shrinks``, ``at_most``, ``at_least``), each a Welch interval of a contrast
  of cell means, and the verdict they make together;
- :mod:`bench.claims.figures` and :mod:`bench.claims.report`: the report;
- :mod:`bench.claims.reproduce`: the command.

Nothing here imports torch at import time: judging and reporting read files.
"""
