"""GPU exporter metrics (NVML). Labels follow dcgm-exporter's identity: node, gpu index, uuid.

Pool is deliberately not a label here: pool membership changes on every
rebalance, so queries join on the scheduler's ``GPU_POOL_INFO`` series by uuid.
"""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, info

GPU_LABELS = ("node", "gpu", "uuid")

GPU_INFO = info(
    "gpu", "Static identity of a GPU.", *GPU_LABELS, "model_name", "driver_version", "pci_bus_id"
)
GPU_UP = gauge(
    "gpu_up", "1 if the last collection read this GPU, 0 if NVML failed on it.", *GPU_LABELS
)
GPU_UTILIZATION = gauge(
    "gpu_utilization_ratio", "Fraction of time a kernel ran on the GPU.", *GPU_LABELS
)
GPU_MEMORY_USED = gauge("gpu_framebuffer_used_bytes", "Framebuffer memory used.", *GPU_LABELS)
GPU_MEMORY_TOTAL = gauge("gpu_framebuffer_total_bytes", "Framebuffer memory in total.", *GPU_LABELS)
GPU_TEMPERATURE = gauge("gpu_temperature_celsius", "GPU die temperature.", *GPU_LABELS)
GPU_POWER = gauge("gpu_power_watts", "Current power draw.", *GPU_LABELS)

EXPORTER_COLLECT_SUCCESS = gauge(
    "gpu_exporter_collect_success", "1 if the last collection cycle completed."
)
EXPORTER_LAST_COLLECT = gauge(
    "gpu_exporter_last_collect_timestamp_seconds", "Unix time the last collection finished."
)
EXPORTER_COLLECT_DURATION = gauge(
    "gpu_exporter_collect_duration_seconds", "Wall time of the last collection cycle."
)
EXPORTER_ERRORS = counter("gpu_exporter_nvml_errors", "NVML calls that returned an error.", "error")

GPU_METRICS: tuple[Metric, ...] = (
    GPU_INFO,
    GPU_UP,
    GPU_UTILIZATION,
    GPU_MEMORY_USED,
    GPU_MEMORY_TOTAL,
    GPU_TEMPERATURE,
    GPU_POWER,
    EXPORTER_COLLECT_SUCCESS,
    EXPORTER_LAST_COLLECT,
    EXPORTER_COLLECT_DURATION,
    EXPORTER_ERRORS,
)
