"""WAL checkpoints off the commit path.

SQLite in WAL mode appends each commit to the ``-wal`` file; a checkpoint
copies those pages back into the database file and fsyncs it. By default the
connection that commits past 1,000 WAL pages runs that checkpoint itself,
inside its commit: at 1,000 webhooks a second that is a 10-40 ms stall every
fraction of a second, on the very thread a request or an alert is waiting for.

So the writers' own threshold is raised to a safety net (``tune_writer``) and a
``Checkpointer``, on its own connection, runs PASSIVE checkpoints from a
background thread: PASSIVE never blocks writers (they keep appending while it
copies) and, once every page is copied, the next commit starts the WAL over
from its beginning, so the file stays small.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

# A writer checkpoints by itself only past this many WAL pages (~40 MB): when no
# Checkpointer runs (a CLI, a test), or it cannot keep up.
AUTOCHECKPOINT_PAGES = 10_000


def tune_writer(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")


class Checkpointer:
    """Checkpoints one database from whichever thread calls ``checkpoint``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def checkpoint(self) -> tuple[int, int]:
        """(WAL pages, pages copied to the database); raises ``sqlite3.Error``."""
        with self._lock:
            if self._db is None:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _, pages, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(pages), int(copied)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
