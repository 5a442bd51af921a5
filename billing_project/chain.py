"""The tamper-evident audit chain over audit entries and financial records.

A trigger on every chained table (billing_project.db.chained) writes a link in the same
transaction as the row: the SHA-256 of the row's content. The sealer then puts links into
one chain, in the order it finds them committed: each sealed link carries its position, the
previous link's hash and its own, `sha256(prev|table|row|content)`. Sealing apart from the
writer keeps financial writes free of a global lock (no hot row, no lock-order deadlocks);
what it costs is a minute in which an unsealed link could be rewritten, no weaker than the
chain itself, which anyone with write access to the database could recompute in full. What
proves it was not is a head kept outside the database: the daily beat job records one
(`ChainHead`), `manage.py audit head` prints it, and `audit verify --head` checks against it.

`verify` walks the chain and names the first broken link: a link whose hash does not follow,
a row that no longer matches its newest link (edited below the ORM), a linked row that is
gone (deleted), a chained row with no link at all (inserted with the triggers off).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from .models import ChainHead, ChainLink

GENESIS = "0" * 64
# One sealer at a time: links get consecutive positions in one order.
_SEAL_LOCK = 0x6269_6C6C_6368  # "billch"
SEAL_BATCH = 5_000


def link_hash(prev_hash: str, table: str, row_id: str, content_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}|{table}|{row_id}|{content_hash}".encode()).hexdigest()


def last_sealed() -> tuple[int, str]:
    last = (
        ChainLink.objects.filter(position__isnull=False)
        .order_by("-position")
        .values_list("position", "link_hash")
        .first()
    )
    return (last[0] or 0, last[1]) if last else (0, GENESIS)


def chain_seal(limit: int = SEAL_BATCH) -> int:
    """Seal up to `limit` links waiting since their rows were committed; how many it sealed."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEAL_LOCK])
        position, prev = last_sealed()
        waiting = list(
            ChainLink.objects.filter(position__isnull=True)
            .order_by("id")
            .values_list("id", "table_name", "row_id", "content_hash")[:limit]
        )
        sealed = []
        for link_id, table, row_id, content_hash in waiting:
            position += 1
            prev_hash, prev = prev, link_hash(prev, table, row_id, content_hash)
            sealed.append(ChainLink(id=link_id, position=position, prev_hash=prev_hash, link_hash=prev))
        ChainLink.objects.bulk_update(sealed, ["position", "prev_hash", "link_hash"], batch_size=1000)
        return len(sealed)


def chain_seal_all() -> int:
    total = 0
    while sealed := chain_seal():
        total += sealed
    return total


def chain_record_head() -> ChainHead | None:
    """Seal what waits, then record the chain's newest link (the daily beat job)."""
    chain_seal_all()
    position, head = last_sealed()
    if position == 0:
        return None
    return ChainHead.objects.create(recorded_at=timezone.now(), position=position, link_hash=head)


@dataclass(frozen=True)
class ChainedTable:
    """A table under the chain, as its trigger says (billing_project.db.chained)."""

    table_name: str
    excluded: list[str]
    condition: str
    enabled: bool


def chained_tables() -> list[ChainedTable]:
    """The tables whose rows the chain covers: those with a chain trigger, which carries the
    columns left out of the hash and the rows it covers as its arguments."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, t.tgargs, t.tgenabled FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE p.proname = 'billing_chain_link' AND NOT t.tgisinternal ORDER BY c.relname
            """
        )
        found = cursor.fetchall()
    tables = []
    for name, args, enabled in found:
        excluded, condition = bytes(args).decode().split("\x00")[:2]
        tables.append(ChainedTable(name, [c for c in excluded.strip("{}").split(",") if c], condition, enabled != "D"))
    return tables


@dataclass
class Verdict:
    links: int = 0
    rows: int = 0
    unsealed: int = 0
    broken: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


def _row_breaks(table: ChainedTable) -> tuple[int, list[str]]:
    """`table`'s chained rows against their newest links, in the database: how many rows, and
    each that does not match (changed, gone, never linked). A row's content hash is the
    trigger's own SQL function, in UTC; its newest link is its highest id (a row's writes are
    serialised by its row lock, so ids follow them)."""
    where = f"WHERE {table.condition}" if table.condition else ""
    sql = f"""
        WITH r AS (
            SELECT t.id::text AS row_id, billing_chain_hash(to_jsonb(t) - %s::text[]) AS content
            FROM {table.table_name} t {where}
        ), l AS (
            SELECT DISTINCT ON (row_id) row_id, content_hash, position
            FROM billing_project_chainlink WHERE table_name = %s ORDER BY row_id, id DESC
        )
        SELECT coalesce(r.row_id, l.row_id), r.content, l.content_hash, l.position, (SELECT count(*) FROM r)
        FROM r FULL JOIN l ON l.row_id = r.row_id
        WHERE r.content IS DISTINCT FROM l.content_hash
        UNION ALL SELECT NULL, NULL, NULL, NULL, (SELECT count(*) FROM r)
    """  # noqa: S608  (table names and conditions from our own registry, written by migrations)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute(sql, [table.excluded, table.table_name])
        found = cursor.fetchall()
    name, breaks = table.table_name, []
    for row_id, content, linked, position, _ in found[:-1]:
        where_ = f"link {position}" if position else "an unsealed link"
        if linked is None:
            breaks.append(f"no link: {name} #{row_id} was written without one")
        elif content is None:
            breaks.append(f"{where_}: {name} #{row_id} is gone")
        else:
            breaks.append(f"{where_}: {name} #{row_id} was changed after it was linked")
    return found[-1][4], breaks


def _links() -> Iterator[ChainLink]:
    return (
        ChainLink.objects.filter(position__isnull=False)
        .order_by("position")
        .only("id", "position", "table_name", "row_id", "content_hash", "prev_hash", "link_hash")
        .iterator(chunk_size=5_000)
    )


def chain_verify(heads: list[tuple[int, str]] | None = None) -> Verdict:
    """Walk the chain from its start; every break found, the first first. `heads` are
    (position, hash) pairs kept elsewhere: each must be in the chain as it was."""
    verdict = Verdict()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                # One snapshot for the walk and the tables: rows written meanwhile are not half-seen.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        expected_heads = {h.position: h.link_hash for h in ChainHead.objects.all()}
        expected_heads.update(dict(heads or []))
        prev, position = GENESIS, 0
        for link in _links():
            verdict.links += 1
            position += 1
            if link.position != position:
                verdict.broken.append(f"link {position}: missing (the chain jumps to {link.position})")
                position = link.position or position
            if link.prev_hash != prev or link.link_hash != link_hash(
                link.prev_hash, link.table_name, link.row_id, link.content_hash
            ):
                verdict.broken.append(
                    f"link {link.position}: its hash does not follow ({link.table_name} #{link.row_id})"
                )
            if link.position in expected_heads and expected_heads[link.position] != link.link_hash:
                verdict.broken.append(f"link {link.position}: differs from the head recorded for it")
            prev = link.link_hash
        for head_position in expected_heads:
            if head_position > position:
                verdict.broken.append(f"link {head_position}: a recorded head past the chain's end ({position})")
        verdict.unsealed = ChainLink.objects.filter(position__isnull=True).count()
        for table in chained_tables():
            if not table.enabled:
                verdict.broken.append(f"no link: {table.table_name}'s chain trigger is disabled")
            rows, breaks = _row_breaks(table)
            verdict.rows += rows
            verdict.broken.extend(breaks)
    verdict.broken.sort(key=_position_of)
    return verdict


def _position_of(message: str) -> int:
    """Breaks by the link they are at (stable: at one link, the chain's own break first);
    those at no sealed link last."""
    number = message.split(":", 1)[0].removeprefix("link ")
    return int(number) if number.isdigit() else 1 << 62
