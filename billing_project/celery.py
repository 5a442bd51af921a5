"""The Celery app: worker and beat share it (`celery -A billing_project worker|beat`)."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def refuse_to_start_on_bad_settings(**kwargs: object) -> None:
    """Worker and beat start only with sound money and time settings (billing_project.checks).
    Celery logs and ignores an exception from a start-up receiver, so this one exits."""
    import django
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    if not apps.ready:  # the Django fixup has usually set Django up by now
        django.setup()
    from .checks import refuse_bad_settings

    try:
        refuse_bad_settings()
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from exc
