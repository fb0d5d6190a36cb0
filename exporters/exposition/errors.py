"""The exposition package's one exception tree.

Only start-up mistakes raise (a metric or label name the text formats cannot
carry, a label value count that does not match); rendering never raises.
"""

from __future__ import annotations


class ExpositionError(ValueError):
    """Base of every error this package raises: a family or series that cannot be exposed."""
