"""The console's admin pages, mounted at /admin/console/ by billing_project/urls.py."""

from django.urls import path

from . import views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("export/", views.export, name="export"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),  # ?day=YYYY-MM-DD
    path("reconciliation/csv/", views.reconciliation_csv, name="reconciliation_csv"),
]
