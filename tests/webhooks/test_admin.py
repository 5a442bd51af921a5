"""Stripe events in the admin: readable, never editable; unprocessed ones can be requeued
by finance, and nobody else."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from tests.conftest import verified_login
from webhooks.models import StripeEvent

from .conftest import make_event

pytestmark = [pytest.mark.django_db]

CHANGELIST = "/admin/webhooks/stripeevent/"


def staff(group: str) -> Client:
    user = get_user_model().objects.create_user(group, password="correct horse battery", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    verified_login(client, user)
    return client


def store(processed: bool) -> StripeEvent:
    event = make_event("invoice.paid")
    return StripeEvent.objects.create(
        stripe_id=event["id"],
        type=event["type"],
        livemode=False,
        created=timezone.now(),
        payload=event,
        attempts=1 if processed else 0,
        processed_at=timezone.now() if processed else None,
    )


def reprocess(client: Client, *events: StripeEvent):
    return client.post(CHANGELIST, {"action": "reprocess", "_selected_action": [e.pk for e in events]}, follow=True)


def test_finance_requeues_only_unprocessed_events(django_capture_on_commit_callbacks):
    pending, done = store(processed=False), store(processed=True)
    with django_capture_on_commit_callbacks() as queued:
        response = reprocess(staff("finance"), pending, done)
    assert response.status_code == 200
    assert len(queued) == 1
    text = response.content.decode()
    assert "Queued 1 event(s)" in text
    assert "Skipped 1 already processed" in text


def test_auditors_read_but_cannot_requeue_or_edit(django_capture_on_commit_callbacks):
    event = store(processed=False)
    auditor = staff("auditor")
    assert auditor.get(CHANGELIST).status_code == 200
    page = auditor.get(f"{CHANGELIST}{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    with django_capture_on_commit_callbacks() as queued:
        reprocess(auditor, event)
    assert queued == []
    assert auditor.post(f"{CHANGELIST}{event.pk}/delete/", {"post": "yes"}).status_code == 403
