"""The committed deploy/generated is what the generators write for deploy/stack.yaml.

CI's ``make check-generated`` does the same through the CLI and git; this
catches a stale commit without either.
"""

from __future__ import annotations

from pathlib import Path

from alerts.generate import write_all as write_alerts
from dashboards.build import write_all as write_dashboards
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "generated"


def test_generated_files_are_up_to_date(stack: Stack, tmp_path: Path) -> None:
    written = [*write_alerts(stack, tmp_path), *write_dashboards(stack, tmp_path / "dashboards")]
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = COMMITTED / rel
        assert committed.exists(), f"{rel} is not committed: run make generate"
        assert committed.read_text() == path.read_text(), f"{rel} is stale: run make generate"
    ours = {p.relative_to(tmp_path) for p in written}
    extra = {
        p.relative_to(COMMITTED)
        for p in COMMITTED.rglob("*")
        if p.is_file() and p.suffix in (".yml", ".json")
    } - ours
    assert not extra, f"files no generator writes: {sorted(map(str, extra))}"


def test_generation_is_deterministic(stack: Stack, tmp_path: Path) -> None:
    a = [p.read_text() for p in write_alerts(stack, tmp_path / "a")]
    b = [p.read_text() for p in write_alerts(stack, tmp_path / "b")]
    assert a == b
