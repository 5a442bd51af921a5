"""Settings that decide money and time are checked at start-up (system checks, tag `billing`),
and the processes that serve refuse to start on an error: manage.py (so `make run`'s
migrate), gunicorn's WSGI application, the Celery worker and beat."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]


def ids(**overrides: object) -> list[str]:
    with override_settings(**overrides):
        return sorted(m.id or "" for m in run_checks(tags=["billing"]))


def test_the_shipped_defaults_pass():
    assert ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DUNNING_RETRY_DAYS": [3, 1, 5]}, "billing.E001"),  # not increasing
        ({"DUNNING_RETRY_DAYS": [1, 1]}, "billing.E001"),  # not strictly increasing
        ({"DUNNING_RETRY_DAYS": [0, 3]}, "billing.E001"),  # a retry on the day of the failure
        ({"DUNNING_RETRY_DAYS": [-2, 3]}, "billing.E001"),
        ({"DUNNING_RETRY_DAYS": "1,3,5"}, "billing.E001"),
        ({"DUNNING_GRACE_DAYS": 0}, "billing.E002"),
        ({"DUNNING_GRACE_DAYS": -7}, "billing.E002"),
        ({"INVOICE_SERIES": ""}, "billing.E003"),
        ({"INVOICE_SERIES": "INV-EU"}, "billing.E003"),  # the dash separates the number's parts
        ({"INVOICE_SERIES": "inv"}, "billing.E003"),
        ({"INVOICE_SERIES": "1NV"}, "billing.E003"),
        ({"INVOICE_SERIES": "INV 2"}, "billing.E003"),
        ({"CREDIT_NOTE_SERIES": "CN/"}, "billing.E003"),
        ({"INVOICE_SERIES": "INVOICESEU1"}, "billing.E004"),  # 11: the series column holds 10
        ({"CREDIT_NOTE_SERIES": "C" * 40}, "billing.E004"),
        ({"CREDIT_NOTE_SERIES": "INV"}, "billing.E005"),  # one sequence for both documents
        ({"INVOICE_GRACE_MINUTES": -1}, "billing.E006"),
        ({"INVOICE_DUE_DAYS": -14}, "billing.E007"),
        ({"LATE_USAGE_WINDOW_DAYS": 0}, "billing.E008"),
        ({"INVOICE_CLOSE_CHUNK": 0}, "billing.E013"),  # a chunk of 0 would close nothing, for ever
        ({"INVOICE_CLOSE_CLAIM_SECONDS": -1}, "billing.E013"),
        ({"STRIPE_RECONCILIATION_DAYS": 0}, "billing.E013"),
        ({"USAGE_PARTITIONS_AHEAD": 0}, "billing.E013"),  # next month's events would all land in the default
        ({"API_DEFAULT_RATE_PER_MINUTE": 0}, "billing.E009"),
        ({"API_MAX_BODY_BYTES": -1}, "billing.E009"),
        ({"API_KEY_CACHE_SECONDS": 0}, "billing.E009"),
        ({"STRIPE_WEBHOOK_MAX_BODY_BYTES": 0}, "billing.E009"),
        ({"AXES_FAILURE_LIMIT": 0}, "billing.E009"),
        ({"AXES_COOLOFF_TIME": timedelta(0)}, "billing.E009"),
    ],
)
def test_a_bad_value_is_an_error_with_its_id(overrides, expected):
    assert ids(**overrides) == [expected]


def test_each_message_names_the_variable_and_the_value():
    with override_settings(DUNNING_RETRY_DAYS=[1, 5, 3], INVOICE_SERIES="INVOICESEU1"):
        messages = {m.id: m.msg for m in run_checks(tags=["billing"])}
    assert "DUNNING_RETRY_DAYS" in messages["billing.E001"]
    assert "1,5,3" in messages["billing.E001"]
    assert "INVOICE_SERIES 'INVOICESEU1' has 11 characters; at most 10" in messages["billing.E004"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"DUNNING_RETRY_DAYS": []},  # our retries off
        {"DUNNING_RETRY_DAYS": [2, 4, 7], "DUNNING_GRACE_DAYS": 7},
        {"INVOICE_SERIES": "F2026", "CREDIT_NOTE_SERIES": "R"},
        {"INVOICE_SERIES": "INVOICESEU"},  # 10: fits
        {"INVOICE_GRACE_MINUTES": 0, "INVOICE_DUE_DAYS": 0},  # close at once, due on receipt
    ],
)
def test_sound_values_pass(overrides):
    assert ids(**overrides) == []


def test_a_last_retry_after_the_grace_is_a_warning():
    with override_settings(DUNNING_RETRY_DAYS=[1, 3, 10], DUNNING_GRACE_DAYS=7):
        (message,) = run_checks(tags=["billing"])
    assert (message.id, message.is_serious()) == ("billing.W001", False)


def test_the_longest_number_of_the_longest_series_fits_its_column():
    from invoicing.checks import series_max_length
    from invoicing.models import CreditNote, Invoice, InvoiceSequence

    longest = f"{'X' * series_max_length()}-2026-{2**31 - 1:06d}"
    assert len(longest) <= (Invoice._meta.get_field("number").max_length or 0)
    assert len(longest) <= (CreditNote._meta.get_field("number").max_length or 0)
    assert series_max_length() <= (InvoiceSequence._meta.get_field("series").max_length or 0)


# ------------------------------------------------------------------ refusing to start
def env(**overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    params = connection.settings_dict
    user, host, name = params["USER"] or "postgres", params["HOST"] or "", params["NAME"]
    if params.get("PASSWORD"):
        user = f"{user}:{quote(params['PASSWORD'], safe='')}"
    if host.startswith("/"):  # the embedded PostgreSQL's socket
        base["DATABASE_URL"] = f"postgresql://{user}@/{name}?host={host}"
    else:
        base["DATABASE_URL"] = f"postgresql://{user}@{host}:{params['PORT'] or 5432}/{name}"
    base["DJANGO_SETTINGS_MODULE"] = "billing_project.settings"
    base["CELERY_QUEUE"] = "billing-settings-check"  # never the suite's queue
    return {**base, **overrides}


BAD = {"DUNNING_RETRY_DAYS": "5,3", "INVOICE_SERIES": "INV-2026"}


def refused(cmd: list[str], **overrides: str) -> str:
    result = subprocess.run(cmd, cwd=ROOT, env=env(**overrides), capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    return output


@pytest.mark.django_db
def test_manage_py_refuses_bad_settings_so_make_runs_migrate_stops():
    output = refused([sys.executable, "manage.py", "check"], **BAD)
    assert "billing.E001" in output
    assert "billing.E003" in output


@pytest.mark.django_db
def test_the_wsgi_application_refuses_bad_settings():
    output = refused([sys.executable, "-c", "import billing_project.wsgi"], **BAD)
    assert "Refusing to start" in output
    assert "billing.E001" in output


@pytest.mark.django_db
@pytest.mark.parametrize("process", [["worker", "--pool", "solo"], ["beat", "--schedule", "{tmp}/schedule"]])
def test_celery_worker_and_beat_refuse_bad_settings(process, tmp_path):
    cmd = [sys.executable, "-m", "celery", "-A", "billing_project", *[a.format(tmp=tmp_path) for a in process]]
    output = refused(cmd, **BAD)
    assert "Refusing to start" in output
    assert "billing.E003" in output


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"INVOICE_DUE_DAYS": "fourteen"}, "INVOICE_DUE_DAYS must be a whole number; it is 'fourteen'."),
        ({"DUNNING_RETRY_DAYS": "1,3,x"}, "DUNNING_RETRY_DAYS must be whole numbers separated by commas"),
    ],
)
def test_a_number_that_is_not_one_is_refused_naming_its_variable(overrides, message):
    assert message in refused([sys.executable, "manage.py", "check"], **overrides)
