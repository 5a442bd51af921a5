"""Celery for real: a worker thread consuming Redis runs our tasks; a task that
fails after its retries becomes a TaskFailure row and a metric."""

from __future__ import annotations

import pytest

from billing_project.celery import app
from billing_project.models import TaskFailure
from billing_project.redis_client import get_redis, rkey
from billing_project.tasks import BillingTask, heartbeat
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@app.task(base=BillingTask, name="tests.declined_card", max_retries=2, retry_backoff=False, default_retry_delay=0)
def declined_card(invoice: str) -> None:
    raise ValueError(f"card declined for {invoice}")


def test_beat_heartbeat_runs_on_a_worker(worker):
    get_redis().delete(rkey("worker-heartbeat"))
    heartbeat.delay()
    assert wait_for(lambda: get_redis().get(rkey("worker-heartbeat")) is not None)


def test_a_task_that_keeps_failing_is_retried_then_recorded(worker, client, settings):
    result = declined_card.delay("INV-7")
    assert wait_for(lambda: TaskFailure.objects.filter(task_id=result.id).exists())
    failure = TaskFailure.objects.get(task_id=result.id)
    assert failure.task_name == "tests.declined_card"
    assert failure.exception_type == "ValueError"
    assert "card declined for INV-7" in failure.message
    assert failure.args == ["INV-7"]
    assert failure.resolved_at is None
    settings.METRICS_TOKEN = "scrape-me"
    metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").content.decode()
    assert "billing_task_failures_open 1.0" in metrics
    assert 'billing_task_failures_total{task="tests.declined_card"} 1.0' in metrics
