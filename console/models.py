"""The console keeps no data of its own: it reads every app's selectors. This holds only the
permission to read the finance overview, on a model with no table."""

from __future__ import annotations

from django.db import models


class FinanceOverview(models.Model):
    """No table: the permission `console.view_finance_overview` (the finance overview page
    and its CSV exports) needs a model to belong to."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_finance_overview", "Can view the finance overview and export its CSVs")]
        verbose_name = "finance overview"

    def __str__(self) -> str:
        return "Finance overview"
