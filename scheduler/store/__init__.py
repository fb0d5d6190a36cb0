"""Durable scheduler state in SQLite (WAL): jobs, allocations, reservations, decisions."""

from scheduler.store.sqlite import Store

__all__ = ["Store"]
