"""The suite's own rule, in CI: a skipped test fails the run (a test the user does not have)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = """
import pytest
from pathlib import Path

def test_needs_a_file():
    if not Path("no-such-dir/traces/x.csv").exists():
        pytest.skip("traces not present")

@pytest.mark.skipif(True, reason="promtool not installed")
def test_needs_a_tool():
    pass

def test_needs_a_module():
    pytest.importorskip("no_such_module_here")

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_known_bug():
    assert False

def test_fine():
    pass
"""


@pytest.mark.parametrize("ci", ["", "1"], ids=["developer", "ci"])
def test_skips_fail_in_ci_only(
    pytester: pytest.Pytester, ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_skipping=SKIPPING)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    if ci:
        result.assert_outcomes(passed=1, failed=2, errors=1, xfailed=1)
        result.stdout.fnmatch_lines(["*skipped in CI (Skipped: traces not present)*"])
        assert result.ret != 0
    else:
        result.assert_outcomes(passed=1, skipped=3, xfailed=1)
        assert result.ret == 0
