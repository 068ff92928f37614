"""The errors of configuration: one readable line for the user."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for the user."""


class DuplicateKeyError(ConfigError):
    """A YAML mapping names the same key twice (the message gives the key and its line)."""
