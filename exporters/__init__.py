"""Exporters: the metric catalog, the NVML GPU exporter and model-level instrumentation."""
