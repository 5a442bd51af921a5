"""Dunning suspensions for the alert rules: subscriptions suspended by dunning in the last
hour (a burst means collection is failing for many tenants at once, not one customer)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import Metric

from billing_project.observability import gauge, state_reader


@state_reader("dunning")
def dunning_suspensions() -> Iterable[Metric]:
    from .models import SubscriptionEvent
    from .services import DUNNING_SUSPENSION

    since = timezone.now() - timedelta(hours=1)
    count = SubscriptionEvent.objects.filter(action="suspend", reason=DUNNING_SUSPENSION, at__gte=since).count()
    yield gauge("billing_dunning_suspensions_last_hour", "Subscriptions suspended by dunning in the last hour", count)
