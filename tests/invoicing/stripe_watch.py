"""Recorded Stripe that watches, at the moment each request is sent, that no database
transaction of ours is open and no row of ours is locked (README, Collection through
Stripe: fetch first, then lock and apply).

A Stripe call inside a transaction holds its locks, and the aggregation watermark (which
waits for the oldest running transaction), for as long as Stripe takes. The watch asserts
the property, not how the code gets there: Django's connection is in no atomic block, its
PostgreSQL session has no transaction open (pg_stat_activity.xact_start), and another
session can take each watched row's lock at once (FOR UPDATE NOWAIT).

Only for tests marked django_db(transaction=True): the others run inside a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import responses
from django.db import connection

from invoicing.providers import stripe_adapter
from tests.invoicing.test_stripe_adapter import API, recorded
from tests.locks import raw_connection


@dataclass
class Watch:
    rows: list[tuple[str, int]] = field(default_factory=list)  # (table, id): must be lockable by others
    calls: list[str] = field(default_factory=list)  # "GET /v1/invoices/in_…" per Stripe request
    problems: list[str] = field(default_factory=list)

    def lock(self, table: str, pk: int) -> None:
        self.rows.append((table, pk))

    def check(self, response: Any) -> Any:
        request = response.request
        call = f"{request.method} {urlsplit(request.url).path}"
        self.calls.append(call)
        if connection.in_atomic_block:
            self.problems.append(f"{call}: inside an atomic block")
        pid = connection.connection.info.backend_pid if connection.connection is not None else None
        with raw_connection() as probe:
            if pid is not None:
                row = probe.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
                if row is not None and row[0] is not None:
                    self.problems.append(f"{call}: a transaction is open on the caller's session")
            for table, pk in self.rows:
                try:
                    probe.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])  # noqa: S608
                except psycopg.errors.LockNotAvailable:
                    self.problems.append(f"{call}: {table} {pk} is locked")
                probe.rollback()
        return response


@pytest.fixture
def watched_stripe(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[responses.RequestsMock, Watch]]:
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_LIVE_MODE = False
    settings.STRIPE_TAX_ENABLED = False
    monkeypatch.setattr(stripe_adapter, "MAX_NETWORK_RETRIES", 0)
    watch = Watch()
    with responses.RequestsMock(assert_all_requests_are_fired=False, response_callback=watch.check) as rsps:
        rsps.get(f"{API}/v1/account", json=recorded("account"))
        yield rsps, watch
