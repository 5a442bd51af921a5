"""Making a race happen instead of hoping for it: hold a lock, then wait until the other
sessions are really queued behind it (PostgreSQL's lock manager says so), never `sleep`."""

from __future__ import annotations

import psycopg
from django.db import connection


def raw_connection() -> psycopg.Connection:
    """A session of its own on the test database, outside Django's connection handling."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=False)


def backend_pid(conn: psycopg.Connection | None = None) -> int:
    """The server process of `conn`, or of this thread's Django connection."""
    if conn is not None:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            row = cursor.fetchone()
    assert row is not None
    return int(row[0])


# Transitively: the first session waiting for a row holds its tuple lock, and the next
# ones wait for that session, not for the row's owner.
BEHIND = """
WITH RECURSIVE behind(pid) AS (
    SELECT l.pid FROM pg_locks l WHERE NOT l.granted AND %(pid)s = ANY(pg_blocking_pids(l.pid))
    UNION
    SELECT l.pid FROM pg_locks l JOIN behind b ON b.pid = ANY(pg_blocking_pids(l.pid)) WHERE NOT l.granted
)
SELECT count(DISTINCT pid) FROM behind
"""


def waiting_behind(pid: int) -> int:
    """How many sessions wait, directly or in a queue, for a lock session `pid` holds. Read
    live from the lock manager on a short connection of its own."""
    with raw_connection() as probe:
        row = probe.execute(BEHIND, {"pid": pid}).fetchone()
    assert row is not None
    return int(row[0])
