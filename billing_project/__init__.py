"""Shared plumbing: settings, URLs, the Celery app, API authentication, errors, health.

The Celery app (billing_project/celery.py) is loaded by BillingProjectConfig.ready(),
not here, so that importing plumbing such as billing_project.embedded sets nothing.
"""
