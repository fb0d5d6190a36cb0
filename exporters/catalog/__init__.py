"""The one catalog of metric names.

Every metric novabrain exposes is declared here exactly once. Exporters register
their collectors from these definitions; alerts and dashboards build PromQL from
them. A metric name never appears as a string literal anywhere else, so a rename
here is a rename everywhere and a typo cannot ship.

The catalog is split by owner (``gpu``, ``model``, ``scheduler``, ``service``) so each
component declares its own families; ``ALL`` is the union and is checked for
naming conventions by the tests.
"""

from __future__ import annotations

from exporters.catalog._metric import PREFIX, Metric, MetricKind
from exporters.catalog.gpu import GPU_METRICS
from exporters.catalog.model import MODEL_METRICS
from exporters.catalog.scheduler import SCHEDULER_METRICS
from exporters.catalog.service import SERVICE_METRICS

ALL: tuple[Metric, ...] = GPU_METRICS + MODEL_METRICS + SCHEDULER_METRICS + SERVICE_METRICS

__all__ = ["ALL", "PREFIX", "Metric", "MetricKind"]
