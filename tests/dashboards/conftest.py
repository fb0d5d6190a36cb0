"""The fake Grafana lives next to these tests (no package: test dirs have no __init__)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
