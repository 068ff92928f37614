"""optuna-dashboard on a sweep's storage (works offline; journal or RDB)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.sweeps.layout import open_sweep_dir, sweep_or_storage
from bench.sweeps.storage import check_storage, open_storage


def start_dashboard(
    sweep_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None
) -> int:
    """Serve optuna-dashboard for a sweep directory (or a storage URL) until interrupted."""
    where = sweep_or_storage(sweep_dir)
    if isinstance(where, Path):
        backend = open_sweep_dir(where, storage).open_storage()
    else:
        check_storage(where)
        backend = open_storage(where)
    from optuna_dashboard import run_server  # once the storage is known to be good

    print(f"optuna-dashboard: http://{host}:{port}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
        run_server(backend, host=host, port=port)
    return 0
