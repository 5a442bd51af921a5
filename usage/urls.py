from django.urls import path

from . import api

urlpatterns = [path("usage/events", api.UsageEventsApi.as_view(), name="usage-events")]
