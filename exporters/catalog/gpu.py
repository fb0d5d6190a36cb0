"""GPU exporter metrics (NVML). Labels follow dcgm-exporter's identity: node, gpu index, uuid.

Pool is deliberately not a label here: pool membership changes on every
rebalance, so queries join on the scheduler's ``GPU_POOL_INFO`` series by uuid.
"""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, histogram, info

GPU_LABELS = ("node", "gpu", "uuid")

# Identity and health
GPU_INFO = info(
    "gpu",
    "Static identity of a GPU.",
    *GPU_LABELS,
    "model_name",
    "driver_version",
    "pci_bus_id",
)
GPU_UP = gauge(
    "gpu_up", "1 if the last collection read this GPU, 0 if NVML failed on it.", *GPU_LABELS
)

# Utilisation
GPU_UTILIZATION = gauge("gpu_utilization_ratio", "Fraction of time a kernel ran.", *GPU_LABELS)
GPU_MEMORY_COPY_UTILIZATION = gauge(
    "gpu_memory_copy_utilization_ratio", "Fraction of time memory was read or written.", *GPU_LABELS
)
GPU_ENCODER_UTILIZATION = gauge(
    "gpu_encoder_utilization_ratio", "Encoder busy fraction.", *GPU_LABELS
)
GPU_DECODER_UTILIZATION = gauge(
    "gpu_decoder_utilization_ratio", "Decoder busy fraction.", *GPU_LABELS
)

# Framebuffer
GPU_MEMORY_USED = gauge("gpu_framebuffer_used_bytes", "Framebuffer memory used.", *GPU_LABELS)
GPU_MEMORY_FREE = gauge("gpu_framebuffer_free_bytes", "Framebuffer memory free.", *GPU_LABELS)
GPU_MEMORY_TOTAL = gauge("gpu_framebuffer_total_bytes", "Framebuffer memory in total.", *GPU_LABELS)

# Thermal and power
GPU_TEMPERATURE = gauge("gpu_temperature_celsius", "GPU die temperature.", *GPU_LABELS)
GPU_MEMORY_TEMPERATURE = gauge("gpu_memory_temperature_celsius", "HBM temperature.", *GPU_LABELS)
GPU_POWER = gauge("gpu_power_watts", "Current power draw.", *GPU_LABELS)
GPU_POWER_LIMIT = gauge("gpu_power_limit_watts", "Enforced power limit.", *GPU_LABELS)
GPU_ENERGY = counter("gpu_energy_joules", "Energy consumed since the driver loaded.", *GPU_LABELS)

# Clocks and throttling
GPU_SM_CLOCK = gauge("gpu_sm_clock_hertz", "SM clock.", *GPU_LABELS)
GPU_MEMORY_CLOCK = gauge("gpu_memory_clock_hertz", "Memory clock.", *GPU_LABELS)
GPU_THROTTLE = gauge(
    "gpu_clock_throttle",
    "1 while a clock throttle reason is active (bounded reason set).",
    *GPU_LABELS,
    "reason",
)

# Interconnect
GPU_PCIE_TX = gauge("gpu_pcie_tx_bytes_per_second", "PCIe transmit throughput.", *GPU_LABELS)
GPU_PCIE_RX = gauge("gpu_pcie_rx_bytes_per_second", "PCIe receive throughput.", *GPU_LABELS)
GPU_PCIE_REPLAY = counter("gpu_pcie_replay", "PCIe replay events.", *GPU_LABELS)
GPU_NVLINK_BANDWIDTH = counter(
    "gpu_nvlink_bytes",
    "NVLink bytes transferred, all links, by direction.",
    *GPU_LABELS,
    "direction",
)

# Errors
GPU_ECC_ERRORS = counter(
    "gpu_ecc_errors",
    "ECC errors by type (corrected, uncorrected) and counter (volatile, aggregate).",
    *GPU_LABELS,
    "type",
    "counter",
)
GPU_REMAPPED_ROWS = gauge(
    "gpu_remapped_rows",
    "Rows remapped, by cause (correctable, uncorrectable).",
    *GPU_LABELS,
    "cause",
)
GPU_XID_ERRORS = counter("gpu_xid_errors", "XID events seen, by XID code.", *GPU_LABELS, "xid")
GPU_XID_LAST_SEEN = gauge(
    "gpu_xid_last_seen_timestamp_seconds",
    "Unix time an XID code was last seen.",
    *GPU_LABELS,
    "xid",
)

# MIG
GPU_MIG_INFO = info(
    "gpu_mig_instance", "A MIG GPU instance.", *GPU_LABELS, "gpu_instance_id", "profile"
)

# Per process / per job attribution (slow tier)
GPU_PROCESS_MEMORY = gauge(
    "gpu_process_framebuffer_used_bytes",
    "Framebuffer used by one process, attributed to its pod and scheduler job.",
    *GPU_LABELS,
    "pid",
    "namespace",
    "pod",
    "container",
    "job",
)

# Collection health
EXPORTER_COLLECT_SUCCESS = gauge(
    "gpu_exporter_collect_success",
    "1 if the last cycle of each tier (fast, slow) completed; 0 if NVML failed as a whole or "
    "an unexpected error cut a read short.",
)
EXPORTER_LAST_COLLECT = gauge(
    "gpu_exporter_last_collect_timestamp_seconds", "Unix time the last collection finished."
)
EXPORTER_COLLECT_DURATION = histogram(
    "gpu_exporter_collect_duration_seconds", "Wall time of collection cycles, by tier.", "tier"
)
EXPORTER_ERRORS = counter(
    "gpu_exporter_nvml_errors",
    "NVML calls that returned an error, by NVML error name; UNEXPECTED_EXCEPTION counts other "
    "exceptions (a backend or exporter bug, logged with its traceback).",
    "error",
)

GPU_METRICS: tuple[Metric, ...] = (
    GPU_INFO,
    GPU_UP,
    GPU_UTILIZATION,
    GPU_MEMORY_COPY_UTILIZATION,
    GPU_ENCODER_UTILIZATION,
    GPU_DECODER_UTILIZATION,
    GPU_MEMORY_USED,
    GPU_MEMORY_FREE,
    GPU_MEMORY_TOTAL,
    GPU_TEMPERATURE,
    GPU_MEMORY_TEMPERATURE,
    GPU_POWER,
    GPU_POWER_LIMIT,
    GPU_ENERGY,
    GPU_SM_CLOCK,
    GPU_MEMORY_CLOCK,
    GPU_THROTTLE,
    GPU_PCIE_TX,
    GPU_PCIE_RX,
    GPU_PCIE_REPLAY,
    GPU_NVLINK_BANDWIDTH,
    GPU_ECC_ERRORS,
    GPU_REMAPPED_ROWS,
    GPU_XID_ERRORS,
    GPU_XID_LAST_SEEN,
    GPU_MIG_INFO,
    GPU_PROCESS_MEMORY,
    EXPORTER_COLLECT_SUCCESS,
    EXPORTER_LAST_COLLECT,
    EXPORTER_COLLECT_DURATION,
    EXPORTER_ERRORS,
)
