"""The WSGI application: Django's, with the entitlement check's and the single usage
event's fast lanes in front of it."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
django_application = get_wsgi_application()  # sets Django up: the fast lane imports models

from billing_project.checks import refuse_bad_settings  # noqa: E402

refuse_bad_settings()  # money and time settings are checked before serving (gunicorn exits)

from entitlements.fastpath import EntitlementCheckFastPath  # noqa: E402
from usage.fastpath import UsageEventFastPath  # noqa: E402

application = EntitlementCheckFastPath(UsageEventFastPath(django_application))

# Everything imported so far lives as long as the process: keep it out of the garbage
# collector's generations, so that collections during requests stay short (tail latency).
gc.freeze()
