"""The real URLconf plus the probe endpoints (tests only)."""

from django.urls import path

from billing_project.urls import handler400, handler404, handler500
from billing_project.urls import urlpatterns as real_urlpatterns

from . import probe_views as v

urlpatterns = [
    path("api/v1/_probe/write", v.ProbeWriteView.as_view()),
    path("api/v1/_probe/query", v.ProbeQueryView.as_view()),
    path("api/v1/_probe/proposals", v.ProbeProposalView.as_view()),
    path("api/v1/_probe/tenants/<str:tenant>/thing", v.ProbeTenantView.as_view()),
    path("api/v1/_probe/error", v.ProbeErrorView.as_view()),
    path("api/v1/_probe/echo-types", v.ProbeEchoTypesView.as_view()),
    *real_urlpatterns,
]

__all__ = ["handler400", "handler404", "handler500", "urlpatterns"]
