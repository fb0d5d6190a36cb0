"""The simulator's exception tree: every error a user's input can cause, as one line."""

from __future__ import annotations


class SimError(Exception):
    """A simulation that cannot run as asked (the CLI prints it and exits 2)."""


class TraceError(SimError):
    """A trace that cannot be opened, or lacks a column it was mapped to."""


class SettingsError(SimError):
    """A policy, variant, start time or cluster size that cannot be used."""
