"""The instrumentation library's one exception tree.

``InstrumentError`` is the base. Only configuration mistakes raise (a model the
stack does not declare, asked for by name at start-up); nothing on the request
path raises, so instrumentation can never fail a request.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """Base of every error this package raises."""


class UnknownModelError(InstrumentError, KeyError):
    """A model (or model version) the stack does not declare."""

    def __init__(self, model: str, version: str | None) -> None:
        self.model = model
        self.version = version
        what = model if version is None else f"{model} {version}"
        super().__init__(f"{what} is not a model of the stack")

    def __str__(self) -> str:
        # KeyError quotes its argument; the message reads better unquoted.
        return str(self.args[0])


class MultiprocessError(InstrumentError):
    """prometheus_client's multiprocess mode is asked for but not set up."""


class RequestRejected(InstrumentError):
    """Raise from model code to shed load: counted as an error with reason ``rejected``."""
