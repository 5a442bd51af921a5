"""Aggregation is exact: for random event sets, watermark positions and ranges, the
usage selector (rollups + raw tail) equals a direct count over the raw events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plans.models import BillableMetric
from subscriptions.models import Tenant
from tests.clock import NOW
from usage.aggregation import usage_aggregate
from usage.models import AggregationWatermark, UsageEvent, UsageRollup, UsageUniqueValue
from usage.selectors import usage_over, whole_hours

pytestmark = [pytest.mark.django_db]

BASE = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = ["ai_tokens", "api_calls", "active_users", "storage_gb"]  # sum, count, unique_count, max
_names = itertools.count()

events_strategy = st.lists(
    st.tuples(
        st.sampled_from([*METRICS, "latest"]),
        st.decimals(min_value=0, max_value=1000, places=3),
        # coarse grids, so that events share instants with hour edges, range ends,
        # each other and the watermark: the boundaries are where exactness breaks
        st.integers(min_value=0, max_value=72 * 4 - 1).map(lambda q: q * 900),  # occurred, s after BASE
        st.integers(min_value=0, max_value=40).map(lambda t: t * 600),  # received, s after BASE
        st.sampled_from(["u1", "u2", "u3", "u4"]),
    ),
    max_size=40,
)


@pytest.fixture
def latest_metric(usage_world) -> BillableMetric:
    return BillableMetric.objects.create(code="latest", name="Latest", aggregation="latest", properties=[])


def truth(
    rows: list[tuple[str, Decimal, int, int, str]], metric: BillableMetric, start: datetime, end: datetime
) -> Decimal | None:
    chosen = [r for r in rows if r[0] == metric.code and start <= BASE + timedelta(seconds=r[2]) < end]
    if metric.aggregation == "count":
        return Decimal(len(chosen))
    if metric.aggregation == "sum":
        return sum((r[1] for r in chosen), Decimal(0))
    if metric.aggregation == "max":
        return max((r[1] for r in chosen), default=None)
    if metric.aggregation == "unique_count":
        return Decimal(len({r[4] for r in chosen}))
    # latest: the last by occurred_at, then by insertion order (id)
    ordered = sorted(enumerate(chosen), key=lambda p: (p[1][2], p[0]))
    return ordered[-1][1][1] if ordered else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=events_strategy,
    cut=st.integers(min_value=0, max_value=40).map(lambda t: t * 600),
    limit=st.integers(min_value=1, max_value=50),
    runs=st.integers(min_value=0, max_value=6),
    span=st.tuples(
        st.integers(min_value=0, max_value=72 * 4).map(lambda q: q * 900),
        st.integers(min_value=0, max_value=72 * 4).map(lambda q: q * 900),
    ),
)
def test_rollups_plus_tail_equal_the_raw_events(reporter, latest_metric, rows, cut, limit, runs, span):
    # given a fresh tenant, rollups rebuilt from nothing
    UsageRollup.objects.all().delete()
    UsageUniqueValue.objects.all().delete()
    AggregationWatermark.objects.all().delete()
    tenant = Tenant.objects.create(external_id=f"t{next(_names)}", name="T")
    key = reporter.key
    metrics = {m.code: m for m in BillableMetric.objects.all()}
    UsageEvent.objects.bulk_create(
        [
            UsageEvent(
                tenant=tenant,
                metric=metrics[code],
                quantity=qty,
                occurred_at=BASE + timedelta(seconds=occ),
                received_at=BASE + timedelta(seconds=rec),
                reported_by=key,
                idempotency_key=f"k{i}",
                payload_hash="h",
                properties={"user_ref": user} if code == "active_users" else {},
            )
            for i, (code, qty, occ, rec, user) in enumerate(rows)
        ]
    )
    # when aggregation ran a few slices towards a random point (the watermark lands
    # on event instants, on the cut, or nowhere yet)
    for _ in range(runs):
        usage_aggregate(limit=limit, up_to=BASE + timedelta(seconds=cut))
    # then every metric over a random range is exact
    start, end = sorted(BASE + timedelta(seconds=s) for s in span)
    for metric in metrics.values():
        assert usage_over(tenant_id=tenant.pk, metric=metric, start=start, end=end) == truth(
            rows, metric, start, end
        ), (metric.code, start, end)


@pytest.fixture
def key(usage_world, make_key):
    return make_key("service", scopes=["usage:write"], metrics=METRICS)


def test_whole_hours():
    at = datetime(2026, 1, 1, 8, 30, tzinfo=UTC)
    assert whole_hours(at, at + timedelta(hours=3)).full_start == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert whole_hours(at, at + timedelta(hours=3)).full_end == datetime(2026, 1, 1, 11, tzinfo=UTC)
    short = whole_hours(at, at + timedelta(minutes=20))
    assert short.full_start == short.full_end == at


@pytest.mark.django_db(transaction=True)
def test_events_arriving_through_the_api_are_aggregated_once(api, key, clock):
    body = {
        "events": [
            {
                "tenant": "acme",
                "metric": "ai_tokens",
                "quantity": "10",
                "idempotency_key": f"e{i}",
                "occurred_at": (NOW - timedelta(hours=3)).isoformat(),  # recent, on the suite's clock
            }
            for i in range(50)
        ]
    }
    assert api.post("/api/v1/usage/events", body, format="json", **key.header).json()["accepted"] == 50
    first = usage_aggregate()
    assert first.events == 50
    assert usage_aggregate().events == 0  # nothing new: nothing counted again
    api.post("/api/v1/usage/events", body, format="json", **key.header)  # a replay: all duplicates
    assert usage_aggregate().events == 0
    rollup = UsageRollup.objects.get()
    assert (rollup.count, rollup.sum) == (50, Decimal(500))
