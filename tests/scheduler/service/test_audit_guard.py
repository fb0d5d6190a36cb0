"""The background verifier: new records within one check, old ones changed within one sweep."""

from __future__ import annotations

from pathlib import Path

from tamper_kit import SCENARIOS, StepClock, entry, fill

from scheduler.audit import AuditLog
from scheduler.audit.guard import Guard


def test_records_are_verified_as_they_are_appended(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    guard = Guard(log.path)
    assert guard.check().ok and guard.check().verified.seq == 0  # an empty log is whole
    head = fill(log)
    state = guard.check()
    assert state.ok and state.verified == head
    log.append(entry(11))
    assert guard.check().verified.seq == 11


def test_every_tampering_scenario_is_found_and_stays_found(tmp_path: Path) -> None:
    for i, scenario in enumerate(SCENARIOS):
        log = AuditLog(tmp_path / f"audit-{i}.db", clock=StepClock())
        fill(log)
        guard = Guard(log.path, sweep_batch=3)
        assert guard.check().ok
        log.close()
        scenario.tamper(log.path)
        found = None
        for _ in range(8):  # a tail check, then sweeps of three records
            state = guard.check()
            if not state.ok:
                found = state
                break
        if scenario.needs_published_head:
            continue  # a consistent rewrite of the end: only a published head shows it
        assert found is not None, scenario.name
        assert found.bad_seq == scenario.bad_seq, (scenario.name, found)
        assert guard.check() == found  # it stays


def test_an_old_record_changed_after_it_was_verified_is_found_by_the_sweep(
    tmp_path: Path,
) -> None:
    from tamper_kit import forge

    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    fill(log)
    guard = Guard(log.path, sweep_batch=3)
    assert guard.check().ok  # everything verified; the sweep starts with the next check
    forge(log.path, 8)
    states = [guard.check() for _ in range(4)]
    # The tail checks do not look back; the sweep does, three records a check.
    assert [s.ok for s in states] == [True, True, True, False]
    assert states[3].bad_seq == 8 and "hash recomputed" in states[3].problem


def test_archived_and_purged_records_verify_with_the_published_first_point(
    tmp_path: Path,
) -> None:
    clock = StepClock()
    arch = tmp_path / "audit-archive.db"
    log = AuditLog(tmp_path / "audit.db", clock=clock, retention_seconds=4.5, archive_path=arch)
    fill(log)  # records at t0+1 .. t0+10; now is t0+10
    assert log.apply_retention() == 6  # t0+1 .. t0+6 (older than t0+11 - 4.5)
    guard = Guard(log.path, archive=arch, sweep_batch=2)
    assert all(guard.check().ok for _ in range(8))
    purged = log.purge(1_700_000_000.0 + 3.5)  # t0+1 .. t0+3
    assert purged is not None
    n, first = purged
    assert (n, first.seq) == (3, 3)
    # The chain no longer starts at record 1: only the published first point vouches for it.
    assert not Guard(log.path, archive=arch).check().ok
    trusting = Guard(log.path, archive=arch, first=lambda: first, sweep_batch=2)
    assert all(trusting.check().ok for _ in range(8))
