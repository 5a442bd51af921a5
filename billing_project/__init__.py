"""Shared plumbing: settings, URLs, the Celery app, API authentication, errors, health."""

from .celery import app as celery_app

__all__ = ("celery_app",)
