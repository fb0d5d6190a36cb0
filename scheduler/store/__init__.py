"""Durable scheduler state in SQLite (WAL): jobs, allocations, reservations, decisions."""

from scheduler.store.sqlite import Actor, Store

__all__ = ["Actor", "Store"]
