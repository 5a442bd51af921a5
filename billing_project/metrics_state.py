"""The foundation's state for the alert rules: open task failures, background work by job
and state, and readiness by dependency (the probes /readyz runs, within its deadline)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from .observability import gauge, state_reader


@state_reader("task_failures")
def task_failures() -> Iterable[Metric]:
    from .models import TaskFailure

    open_failures = TaskFailure.objects.filter(resolved_at__isnull=True).count()
    yield gauge("billing_task_failures_open", "Failed background tasks nobody has resolved yet", open_failures)


@state_reader("work_items")
def work_items() -> Iterable[Metric]:
    """Per job, items retrying and blocked (every job and state present, 0 included, so a
    rule sees a blocked count go to zero rather than vanish)."""
    from .models import WorkItem

    family = GaugeMetricFamily(
        "billing_work_items", "Background work items that failed, by job and state", labels=["job", "state"]
    )
    counts = {
        (row["job"], row["state"]): row["n"]
        for row in WorkItem.objects.exclude(state=WorkItem.State.DONE).values("job", "state").annotate(n=Count("id"))
    }
    jobs = sorted({job for job, _ in counts} | set(WorkItem.objects.values_list("job", flat=True).distinct()))
    for job in jobs:
        for state in (WorkItem.State.RETRYING, WorkItem.State.BLOCKED):
            family.add_metric([job, state.value], counts.get((job, state.value), 0))
    yield family


@state_reader("readiness")
def readiness() -> Iterable[Metric]:
    from .health import readiness_checks

    family = GaugeMetricFamily(
        "billing_readiness", "1 when the dependency answers as /readyz requires, else 0", labels=["check"]
    )
    for name, check in readiness_checks().items():
        family.add_metric([name], 1 if check["ok"] else 0)
    yield family
