"""Published findings about architecture choices as data, and ``bench reproduce``.

A claim is one YAML file in ``sweeps/claims/`` (shipped as ``bench/claims/files``):
the citation, the paper's statement in one sentence, why this size, an ordinary
compare sweep that tests it, the metrics and the decision rule (each test with its
smallest effect of interest and role: evidence, control or sanity check), fixed before
the runs they judge. ``bench reproduce`` runs each claim's sweep (resumable like any
sweep) and writes one report with a verdict per claim: consistent with the paper at
this scale, not reproduced at this scale or inconclusive, each with its reason.

- :mod:`bench.claims.spec`: the claim file's schema (pydantic) and loading;
- :mod:`bench.claims.metrics`: one number per run (or per seed of a group) from a
  sweep's records;
- :mod:`bench.claims.rules`: the registered tests (``better``, ``not_worse``,
  ``equivalent``, ``gap_shrinks``, ``at_most``, ``at_least``, ``near``), each a Welch
  interval of a contrast of cell means judged against its SESOI, censoring at the
  task's bounds, and the verdict they make together;
- :mod:`bench.claims.prereg`: the claim file's hash recorded at launch and checked at
  judgement;
- :mod:`bench.claims.figures` and :mod:`bench.claims.report`: the report;
- :mod:`bench.claims.reproduce`: the command.

Nothing here imports torch at import time: judging and reporting read files.
"""
