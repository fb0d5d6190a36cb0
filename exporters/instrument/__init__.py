"""Model-level instrumentation for any Python model server.

Integrations, all recording exactly one request per call with labels from the
stack only (model, version, pool) and bounded outcome/reason labels:

* the plain API: ``ModelInstruments(stack, registry).recorder(model).observe(...)``;
* a decorator: ``@instruments.timed("risk-scorer")`` (sync or async functions);
* a context manager: ``with instruments.track("risk-scorer"):`` or ``async with``;
* aiohttp middleware: ``instrument_middleware(instruments)``, or for hot routes
  the same recording as a handler decorator, ``instrument_handler(instruments)``;
* ASGI middleware: ``InstrumentMiddleware(app, instruments)``.
"""

from exporters.instrument.aiohttp_middleware import instrument_handler, instrument_middleware
from exporters.instrument.asgi import InstrumentMiddleware
from exporters.instrument.buckets import ModelBuckets, buckets_for, latency_buckets
from exporters.instrument.core import (
    ErrorReason,
    ModelKey,
    ModelRecorder,
    Outcome,
    Tracked,
    classify_exception,
)
from exporters.instrument.errors import (
    InstrumentError,
    MultiprocessError,
    RequestRejected,
    UnknownModelError,
)
from exporters.instrument.http import classify_status, model_from_path
from exporters.instrument.instruments import ModelInstruments

__all__ = [
    "ErrorReason",
    "InstrumentError",
    "InstrumentMiddleware",
    "ModelBuckets",
    "ModelInstruments",
    "ModelKey",
    "ModelRecorder",
    "MultiprocessError",
    "Outcome",
    "RequestRejected",
    "Tracked",
    "UnknownModelError",
    "buckets_for",
    "classify_exception",
    "classify_status",
    "instrument_handler",
    "instrument_middleware",
    "latency_buckets",
    "model_from_path",
]
