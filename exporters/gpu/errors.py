"""The GPU exporter's exception tree (NVML errors have their own, in exporters.nvml.errors)."""

from __future__ import annotations


class GpuExporterError(Exception):
    """Base of every error the GPU exporter raises to its caller."""


class ConfigError(GpuExporterError):
    """The exporter was asked for something it cannot do (an unknown backend, a clashing label)."""


class PodResourcesError(GpuExporterError):
    """The kubelet pod-resources API is unreachable or answered something unreadable."""
