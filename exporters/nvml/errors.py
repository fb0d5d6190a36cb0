"""The NVML exception tree: one base class, one subclass per error the exporter treats differently.

Both backends raise these and nothing else, so the collector never sees a
``pynvml.NVMLError`` (or anything from ctypes) and the HTTP handler never sees
an NVML error at all.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """NVML return codes (``nvmlReturn_t``), with the values of nvml.h."""

    UNINITIALIZED = 1
    INVALID_ARGUMENT = 2
    NOT_SUPPORTED = 3
    NO_PERMISSION = 4
    NOT_FOUND = 6
    INSUFFICIENT_SIZE = 7
    DRIVER_NOT_LOADED = 9
    TIMEOUT = 10
    LIBRARY_NOT_FOUND = 12
    FUNCTION_NOT_FOUND = 13
    GPU_IS_LOST = 15
    RESET_REQUIRED = 16
    LIB_RM_VERSION_MISMATCH = 18
    UNKNOWN = 999


class NvmlError(Exception):
    """An NVML call failed. ``code`` is the NVML return code, ``call`` the backend call."""

    def __init__(self, code: int, call: str = "") -> None:
        self.code = code
        self.call = call
        super().__init__(f"{call or 'nvml'}: {self.name}")

    @property
    def name(self) -> str:
        """A bounded label value: the code's name, or ``ERROR_<n>`` for codes this module does not list."""
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"ERROR_{self.code}"


class NotSupportedError(NvmlError):
    """The GPU or driver does not offer this value: skip it, do not mark the GPU down."""


class GpuLostError(NvmlError):
    """The GPU fell off the bus (or needs a reset): the GPU is down, the others are not."""


class DriverError(NvmlError):
    """The library is unusable as a whole (driver not loaded, not initialised, version
    mismatch, library missing): every GPU is down and NVML must be initialised again."""


_CLASSES: dict[int, type[NvmlError]] = {
    ErrorCode.NOT_SUPPORTED: NotSupportedError,
    ErrorCode.GPU_IS_LOST: GpuLostError,
    ErrorCode.RESET_REQUIRED: GpuLostError,
    ErrorCode.UNINITIALIZED: DriverError,
    ErrorCode.DRIVER_NOT_LOADED: DriverError,
    ErrorCode.LIBRARY_NOT_FOUND: DriverError,
    ErrorCode.LIB_RM_VERSION_MISMATCH: DriverError,
}


def nvml_error(code: int, call: str = "") -> NvmlError:
    """The exception for an NVML return code, of the subclass the collector dispatches on."""
    return _CLASSES.get(code, NvmlError)(code, call)


def parse_code(error: str | int) -> int:
    """``"GPU_IS_LOST"``, ``"NVML_ERROR_GPU_IS_LOST"`` or ``15`` -> 15."""
    if isinstance(error, int):
        return error
    name = error.upper().removeprefix("NVML_ERROR_")
    try:
        return ErrorCode[name].value
    except KeyError:
        known = ", ".join(c.name for c in ErrorCode)
        raise ValueError(f"unknown NVML error {error!r}; known: {known}") from None
