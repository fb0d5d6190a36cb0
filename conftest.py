"""Suite-wide settings and fixtures.

Hypothesis explores new random examples on developers' machines, where a new
counterexample is a finding; in CI (``CI`` set, as ``.ci/run`` runs) it uses a
fixed derandomized sequence, so a red CI always reproduces.

In CI a skipped test fails: a test skipped for a missing file or tool is a
test the user does not have (vendor the file; ``make test`` installs the tools).

``stack`` is the committed stack file (test modules that need a variant define
their own); ``any_stack`` is it and the same stack on the demo's fast clock.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import settings

from deploy.demo import FAST_TIMING
from deploy.stack import Stack, load_stack

ROOT = Path(__file__).resolve().parent
pytest_plugins = ["pytester"]  # tests/test_conftest.py runs this file's hook on its own tests

CI = bool(os.environ.get("CI"))
settings.register_profile("ci", derandomize=True, print_blob=True)
if CI:
    settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    report = yield
    rep = report.get_result()
    if CI and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (
            f"skipped in CI ({reason}): a test skipped for a missing file or tool is a test "
            "the user does not have; vendor the file, or install the tool in `make tools`"
        )


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(ROOT / "deploy/stack.yaml")


@pytest.fixture(scope="session", params=["production", "fast"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """The committed stack and its demo timing: both must generate valid, tested rules."""
    return stack if request.param == "production" else stack.with_timing(**FAST_TIMING)
