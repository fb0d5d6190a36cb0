"""Suite-wide settings.

Hypothesis explores new random examples on developers' machines, where a new
counterexample is a finding; in CI (``CI`` set, as ``.ci/run`` runs) it uses a
fixed derandomized sequence, so a red CI always reproduces.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
