"""Whatever ``stack check`` accepts, ``generate`` and the scheduler accept too.

Hypothesis edits the committed stack: a few of its values replaced by values
around them (bounds, just past them, NaN, infinities, huge integers, booleans,
strings with a trailing newline, other types), keys dropped or added. A stack
the validator refuses gets one error naming a field; a stack it accepts must
generate every artefact (with no NaN in any JSON), start the scheduler's
runtime and serve its policy as JSON, and, on a handful of examples, pass
``promtool check rules`` and ``amtool check-config``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alerts.generate import documents, dump
from alerts.rules import rule_files
from dashboards.build import build_all
from dashboards.provisioning import write as write_provisioning
from deploy.stack import Stack, StackError, parse_stack
from scheduler.runtime import SchedulerRuntime
from scheduler.service.endpoint import jsonable

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "deploy/stack.yaml").read_text())


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


LEAVES = list(_leaves(DOC))
EDGES = [0, 1, -1, 0.5, 0.001, 1e9, 1e9 + 1, 4096, 4097, 65535, 65536, 10**30, True, False, None]


def _around(value: Any) -> st.SearchStrategy[Any]:
    """Values near ``value`` (most of them valid) and values a mistake or a hostile file
    could put there instead."""
    anything = st.one_of(
        st.sampled_from(EDGES),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.lists(st.integers(), max_size=2),
    )
    if isinstance(value, bool):
        return st.one_of(st.booleans(), anything)
    if isinstance(value, int):
        near: st.SearchStrategy[Any] = st.integers(max(0, value // 2 - 1), 2 * value + 1)
        return st.one_of(near, near, st.integers(-(2**64), 2**64), anything)
    if isinstance(value, float):
        near = st.floats(value / 2, 2 * value) if value else st.floats(0, 1)
        return st.one_of(near, near, st.floats(0, 10 * value or 10), anything)
    if isinstance(value, str):
        return st.one_of(
            st.sampled_from([value, value + "-x", value + "\n", " " + value, value.upper(), ""]),
            anything,
        )
    return anything


@st.composite
def stacks_around_the_committed_one(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    for path, value in draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=3, unique=True)):
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and draw(st.integers(0, 9)) == 0:
            del parent[path[-1]]  # a field left out: its default, or "is required"
        else:
            parent[path[-1]] = draw(_around(value))
    return doc


def _accepted(doc: dict[str, Any]) -> Stack | None:
    try:
        return parse_stack(doc)
    except StackError as e:
        assert "\n" not in str(e) and len(str(e)) < 400, str(e)
        return None


def _generate_and_start(stack: Stack, out: Path) -> None:
    """What ``generate`` and ``scheduler`` do with a stack, without the ports."""
    for doc in documents(stack).values():
        dump(doc)
    json.dumps(build_all(stack), allow_nan=False)
    write_provisioning(stack, out / "provisioning")
    runtime = SchedulerRuntime.from_stack(
        stack, db_path=out / "scheduler.db", registry=CollectorRegistry()
    )
    try:
        # What GET /api/v1/policy and /api/v1/pools serve: JSON, so no NaN.
        json.dumps(jsonable(runtime.policy()), allow_nan=False)
        json.dumps(jsonable(runtime.pools()), allow_nan=False)
    finally:
        runtime.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(stacks_around_the_committed_one())
def test_what_the_validator_accepts_generates_and_schedules(doc: dict[str, Any]) -> None:
    stack = _accepted(doc)
    if stack is None:
        return
    with tempfile.TemporaryDirectory() as d:
        _generate_and_start(stack, Path(d))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks_around_the_committed_one().map(_accepted).filter(lambda s: s is not None))
def test_what_the_validator_accepts_passes_promtool_and_amtool(stack: Stack) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        names = []
        for name, doc in rule_files(stack).items():
            (out / name).write_text(dump(doc))
            names.append(name)
        (out / "alertmanager.yml").write_text(dump(documents(stack)["alertmanager.yml"]))
        for cmd in (
            ["promtool", "check", "rules", *names],
            ["amtool", "check-config", "alertmanager.yml"],
        ):
            r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
