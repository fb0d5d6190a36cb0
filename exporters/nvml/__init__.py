"""NVML behind one small interface, with a real backend (nvidia-ml-py) and a simulated one.

``exporters.nvml.backend.Nvml`` is the interface; ``exporters.nvml.sim.SimBackend``
and ``exporters.nvml.real.NvmlBackend`` implement it. Errors form one tree rooted
at ``exporters.nvml.errors.NvmlError``.
"""
