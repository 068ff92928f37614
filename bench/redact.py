"""Credentials never reach a record: storage URLs, command lines and environments.

Every place that records a command, a URL or an environment (``sweep.json``,
``manifest.json``, the W&B run, reports, logs, error messages) passes it through
this module first. Hidden: the password of a URL (``scheme://user:PASSWORD@host``),
the value of ``--storage`` on a command line, and the value of every environment
variable whose name says it is a secret (``WANDB_API_KEY``, ``*_TOKEN``,
``*_PASSWORD``, ``*_SECRET``, ...), wherever that value shows up in a text.

Plain Python on purpose (like :mod:`bench.records`): no torch, no SQLAlchemy.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

HIDDEN = "***"

# Names of environment variables that hold secrets.
SECRET_NAME = re.compile(
    r"(API_?KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIALS?|PRIVATE_KEY|(^|_)PW|(^|_)PASS)$",
    re.IGNORECASE,
)
# ``scheme://user:password@`` (the password ends at the last '@' before the host).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)(?P<pw>[^\s/'\"]*)@")
MIN_SECRET_LEN = 4  # shorter values would hide ordinary words


def is_secret_name(name: str) -> bool:
    """True for environment variable names such as ``WANDB_API_KEY`` or ``PGPASSWORD``."""
    return bool(SECRET_NAME.search(name)) or name.upper().endswith("PASSWORD")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret environment variables, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def url(value: str) -> str:
    """``value`` with the password of its URL hidden (anything else unchanged)."""
    return text(value)


def text(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Any text with URL passwords and the values of secret environment variables hidden."""
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}{HIDDEN}@", value)
    for secret in secret_values(environ):
        out = out.replace(secret, HIDDEN)
    return out


def argv(args: Sequence[str]) -> list[str]:
    """A command line with URL passwords (``--storage``'s included) and secrets hidden."""
    return [text(a) for a in args]


def command(args: Sequence[str]) -> str:
    """``shlex.join`` of :func:`argv`: how a command is recorded."""
    return shlex.join(argv(args))


def environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of an environment with secret values (and URL passwords) hidden."""
    env = os.environ if environ is None else environ
    return {k: HIDDEN if is_secret_name(k) else text(v, env) for k, v in env.items()}


@contextmanager
def hidden_argv() -> Iterator[None]:
    """Redact ``sys.argv`` while a library records it (wandb's run metadata reads it)."""
    saved = sys.argv
    sys.argv = argv(saved)
    try:
        yield
    finally:
        sys.argv = saved
