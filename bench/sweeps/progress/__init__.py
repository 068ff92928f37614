"""Where a sweep stands, for people: each cell's tally, best and time left
(``standing.py``), ``bench status`` and the live table (``status.py``), the sweep-level
W&B run (``wandb_run.py``) and optuna-dashboard (``dashboard.py``).
"""
