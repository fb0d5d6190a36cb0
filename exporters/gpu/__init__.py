"""The GPU exporter: NVML metrics served from a snapshot refreshed in the background."""
