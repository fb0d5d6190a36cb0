"""The manifest generator's one exception."""

from __future__ import annotations


class ManifestError(ValueError):
    """Something the stack or a generated config asks for has no Kubernetes rendering."""
