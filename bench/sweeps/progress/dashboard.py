"""optuna-dashboard on a sweep's storage (works offline; journal or RDB)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.config import ConfigError
from bench.sweeps.layout import is_sweep_dir, open_sweep_dir
from bench.sweeps.storage import check_storage, open_storage


def start_dashboard(
    sweep_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None
) -> int:
    """Serve optuna-dashboard for a sweep directory (or a storage URL) until interrupted."""
    from optuna_dashboard import run_server

    if is_sweep_dir(sweep_dir):
        sweep = open_sweep_dir(sweep_dir, storage)
        backend = sweep.open_storage()
    else:
        url = str(sweep_dir)
        if "://" not in url:
            raise ConfigError(
                f"{sweep_dir}: not a sweep directory (no sweep.json) nor a storage URL"
            )
        check_storage(url)
        backend = open_storage(url)
    print(f"optuna-dashboard: http://{host}:{port}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
        run_server(backend, host=host, port=port)
    return 0
