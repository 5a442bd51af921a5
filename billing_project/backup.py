"""Backup and restore, drilled (issue 17, part 2).

`manage.py backup` writes a PostgreSQL dump (pg_dump's custom format) and beside it a
manifest of what the books hold at the dump's instant: row counts of every table, and what
each app registers here (the credit ledger's balance per tenant and currency, the last
number of every invoice and credit-note series, the audit chain's head, the triggers that
keep records append-only). Dump and manifest read one snapshot: the manifest is computed in
a REPEATABLE READ transaction whose snapshot pg_dump is given, so both describe the same
instant while the service keeps writing.

`manage.py restore FILE --target URL --verify` restores into an empty database and then
recomputes the manifest there and checks every invariant the apps register (gapless
series, invoices equal to the sum of their lines, ledger balances never negative, ...).

Everything here is SQL over a plain psycopg connection, so the same checks run against the
database being backed up and against a restored copy no Django alias points at. Apps
register their sections and invariants with `manifest_section` and `invariant` (in their
AppConfig.ready), so the foundation names no app above it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
from django.db import connection

MANIFEST_SCHEMA = "billing.backup-manifest/1"
# A section: a name and a SELECT whose rows (as lists) are the section's value.
SECTIONS: dict[str, str] = {}
# An invariant: a name and a SELECT returning the rows that break it (none: it holds).
INVARIANTS: dict[str, str] = {}


def manifest_section(name: str, sql: str) -> None:
    SECTIONS[name] = sql


def invariant(name: str, sql: str) -> None:
    INVARIANTS[name] = sql


manifest_section(
    "triggers",  # the append-only guards, chain triggers and the rest: present and enabled
    "SELECT c.relname, t.tgname, t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND n.nspname = 'public'"
    " ORDER BY 1, 2",
)
manifest_section(
    "audit_chain_head",
    "SELECT position, link_hash FROM billing_project_chainlink WHERE position IS NOT NULL"
    " ORDER BY position DESC LIMIT 1",
)
manifest_section("audit_chain_links", "SELECT count(*) FROM billing_project_chainlink")
invariant(
    "append-only and chain triggers enabled",
    "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE NOT t.tgisinternal AND t.tgenabled = 'D'",
)
invariant(
    "audit chain sealed links follow one another",
    "SELECT l.position FROM billing_project_chainlink l JOIN billing_project_chainlink p"
    " ON p.position = l.position - 1 WHERE l.prev_hash <> p.link_hash",
)


def conninfo(settings_dict: dict[str, Any] | None = None) -> str:
    """libpq connection string of the default database (embedded or not: the embedded
    engine's socket folder is in OPTIONS, as DATABASE_URL's `?host=` puts it, and without
    it libpq would reach the machine's default socket, another server)."""
    s = settings_dict or connection.settings_dict
    parts = {
        "dbname": s["NAME"],
        "user": s.get("USER") or None,
        "host": s.get("HOST") or (s.get("OPTIONS") or {}).get("host") or None,
        "port": str(s["PORT"]) if s.get("PORT") else None,
        "password": s.get("PASSWORD") or None,
    }
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


def _rows(cursor: psycopg.Cursor[Any], sql: str) -> list[list[Any]]:
    cursor.execute(sql.encode())
    return [[_plain(value) for value in row] for row in cursor.fetchall()]


def _plain(value: Any) -> Any:
    """A value as the manifest's JSON keeps it: Decimals and times as strings."""
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def tables(cursor: psycopg.Cursor[Any]) -> list[str]:
    cursor.execute(
        b"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        b" WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
    )
    return [row[0] for row in cursor.fetchall()]


def books(cursor: psycopg.Cursor[Any]) -> dict[str, Any]:
    """What the manifest says of a database: row counts and every registered section."""
    counts = {}
    for table in tables(cursor):
        cursor.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table)))
        row = cursor.fetchone()
        counts[table] = row[0] if row else 0
    return {"row_counts": counts, **{name: _rows(cursor, sql) for name, sql in sorted(SECTIONS.items())}}


def broken_invariants(cursor: psycopg.Cursor[Any]) -> dict[str, list[list[Any]]]:
    found = {}
    for name, sql in sorted(INVARIANTS.items()):
        rows = _rows(cursor, sql)
        if rows:
            found[name] = rows[:20]
    return found


# ------------------------------------------------------------------ the PostgreSQL tools
def _major(version_output: str) -> int:
    match = re.search(r"\(PostgreSQL\) (\d+)", version_output)
    return int(match.group(1)) if match else 0


def pg_tool(name: str, server_major: int) -> str:
    """pg_dump or pg_restore no older than the server: PG_BIN_DIR if set, else the one the
    embedded engine ships (pgserver), else the machine's (Debian's postgresql-client)."""
    candidates = []
    if os.environ.get("PG_BIN_DIR"):
        candidates.append(str(Path(os.environ["PG_BIN_DIR"]) / name))
    try:
        import pgserver  # type: ignore[import-untyped, unused-ignore]

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name))
    except ImportError:
        pass
    if found := shutil.which(name):
        candidates.append(found)
    seen: list[tuple[int, str]] = []
    for path in candidates:
        if Path(path).exists():
            version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
            seen.append((_major(version.stdout), path))
    usable = sorted((major, path) for major, path in seen if major >= server_major)
    if usable:
        return usable[0][1]  # the server's own major when there is one, else the nearest newer
    found = ", ".join(f"{path} ({major})" for major, path in seen) or "none"
    raise BackupError(f"no {name} for PostgreSQL {server_major} or newer (found: {found}); set PG_BIN_DIR")


def _server_major(cursor: psycopg.Cursor[Any]) -> int:
    cursor.execute(b"SHOW server_version_num")
    row = cursor.fetchone()
    return int(row[0]) // 10000 if row else 0


class BackupError(Exception):
    pass


def _env_for(info: str) -> dict[str, str]:
    """The tools' environment: the password through PGPASSWORD, never on a command line."""
    env = dict(os.environ)
    password = psycopg.conninfo.conninfo_to_dict(info).get("password")
    if password:
        env["PGPASSWORD"] = str(password)
    return env


def _without_password(info: str) -> str:
    parts = psycopg.conninfo.conninfo_to_dict(info)
    parts.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ backup
@dataclass
class Backup:
    dump: Path
    manifest: Path
    data: dict[str, Any] = field(default_factory=dict)


def backup_write(directory: Path, *, info: str | None = None, now: Callable[[], datetime] | None = None) -> Backup:
    """A dump and its manifest in `directory`, both of one snapshot."""
    info = info or conninfo()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or (lambda: datetime.now(UTC)))().strftime("%Y%m%dT%H%M%SZ")
    dump, manifest = directory / f"billing-{stamp}.dump", directory / f"billing-{stamp}.manifest.json"
    with psycopg.connect(info, autocommit=False) as conn, conn.cursor() as cursor:
        cursor.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(b"SELECT pg_export_snapshot(), now()")
        snapshot, taken_at = cursor.fetchone() or ("", None)
        server_major = _server_major(cursor)
        pg_dump = pg_tool("pg_dump", server_major)
        held = books(cursor)
        done = subprocess.run(  # noqa: S603  (our own arguments, no shell)
            [
                pg_dump,
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={dump}",
                f"--dbname={_without_password(info)}",
            ],
            capture_output=True,
            text=True,
            env=_env_for(info),
            check=False,
        )
        conn.rollback()
    if done.returncode != 0:
        dump.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
    data = {
        "schema": MANIFEST_SCHEMA,
        "taken_at": taken_at.isoformat() if taken_at else None,
        "server_major": server_major,
        "dump": {"file": dump.name, "sha256": _sha256(dump), "bytes": dump.stat().st_size},
        **held,
    }
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Backup(dump, manifest, data)


# ------------------------------------------------------------------ restore
@dataclass
class Verdict:
    restored_into: str
    mismatches: dict[str, Any] = field(default_factory=dict)
    broken: dict[str, list[list[Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.broken


def manifest_of(dump: Path) -> dict[str, Any]:
    path = dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json")
    if not path.exists():
        raise BackupError(f"no manifest beside the dump: {path.name}")
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("schema") != MANIFEST_SCHEMA:
        raise BackupError(f"{path.name} is not a {MANIFEST_SCHEMA} manifest")
    return data


def _ensure_empty_database(target: str) -> None:
    """Create the target database when it does not exist; refuse one that holds tables."""
    parts = psycopg.conninfo.conninfo_to_dict(target)
    name = str(parts.get("dbname") or "")
    try:
        with psycopg.connect(target) as conn, conn.cursor() as cursor:
            if tables(cursor):
                raise BackupError(f"database {name!r} is not empty: restore only into an empty database")
            return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise BackupError(f"cannot reach the target database: {error}") from None
    admin = psycopg.conninfo.make_conninfo(**{**{k: str(v) for k, v in parts.items()}, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def restore(dump: Path, target: str, *, verify: bool = True) -> Verdict:
    """Restore `dump` into the empty database `target` (created if missing), then compare
    it with the manifest and check every invariant."""
    manifest = manifest_of(dump)
    if _sha256(dump) != manifest["dump"]["sha256"]:
        raise BackupError(f"{dump.name} does not match its manifest's checksum: the dump is damaged")
    _ensure_empty_database(target)
    with psycopg.connect(target) as conn, conn.cursor() as cursor:
        pg_restore = pg_tool("pg_restore", max(_server_major(cursor), int(manifest["server_major"])))
    done = subprocess.run(  # noqa: S603  (our own arguments, no shell)
        [pg_restore, "--exit-on-error", "--no-owner", f"--dbname={_without_password(target)}", str(dump)],
        capture_output=True,
        text=True,
        env=_env_for(target),
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()[-2000:]}")
    verdict = Verdict(restored_into=str(psycopg.conninfo.conninfo_to_dict(target).get("dbname")))
    if not verify:
        return verdict
    with psycopg.connect(target) as conn, conn.cursor() as cursor:
        found = books(cursor)
        verdict.broken = broken_invariants(cursor)
    for key, expected in found.items():
        if manifest.get(key) != expected:
            verdict.mismatches[key] = _difference(manifest.get(key), expected)
    return verdict


def _difference(expected: Any, found: Any) -> Any:
    if isinstance(expected, dict) and isinstance(found, dict):
        keys = sorted(set(expected) | set(found))
        return {
            k: {"manifest": expected.get(k), "restored": found.get(k)} for k in keys if expected.get(k) != found.get(k)
        }
    return {"manifest": expected, "restored": found}
