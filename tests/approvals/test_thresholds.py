"""APPROVAL_THRESHOLDS: above a currency's threshold a staff member's credit, refund or credit
note waits for a second person; a currency without one always does; a value that cannot be
read stops the service at start-up, naming the variable."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.checks import run_checks

from approvals.checks import check_approvals
from approvals.services import needs_approval
from approvals.thresholds import BadThresholds, parse_thresholds
from billing_project.checks import refuse_bad_settings
from billing_project.money import Money


def money(amount: str, currency: str) -> Money:
    return Money(Decimal(amount), currency)


def test_the_default_thresholds_per_currency(settings):
    settings.APPROVAL_THRESHOLDS = "USD:500,EUR:500,GBP:500,JPY:75000"
    assert not needs_approval(amount=money("499.99", "USD"))
    assert not needs_approval(amount=money("500.00", "USD"))  # at the threshold: not above it
    assert needs_approval(amount=money("500.01", "USD"))
    assert not needs_approval(amount=money("500", "EUR"))
    assert needs_approval(amount=money("500.01", "GBP"))
    assert not needs_approval(amount=money("75000", "JPY"))  # no minor unit
    assert needs_approval(amount=money("75001", "JPY"))
    assert needs_approval(amount=money("0.01", "CHF"))  # no threshold: always
    assert needs_approval(amount=money("1", "usd")) is False  # codes are normalised


def test_changed_thresholds_apply_at_once(settings):
    settings.APPROVAL_THRESHOLDS = "USD:100"
    assert needs_approval(amount=money("100.01", "USD"))
    assert needs_approval(amount=money("1", "EUR"))
    settings.APPROVAL_THRESHOLDS = ""  # none at all: everything waits
    assert needs_approval(amount=money("0.01", "USD"))
    settings.APPROVAL_THRESHOLDS = "USD:0"
    assert needs_approval(amount=money("0.01", "USD"))


def test_parsing():
    assert dict(parse_thresholds(" USD:500 , JPY:75000 ")) == {"USD": Decimal(500), "JPY": Decimal(75000)}
    assert dict(parse_thresholds("KWD:1.500")) == {"KWD": Decimal("1.500")}
    assert dict(parse_thresholds("")) == {}


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("USD500", "is not CURRENCY:AMOUNT"),
        ("USD:", "is not CURRENCY:AMOUNT"),
        (":500", "is not CURRENCY:AMOUNT"),
        ("USD:500,", "empty entry"),
        ("USD:500,,EUR:5", "empty entry"),
        ("XYZ:500", "not an ISO 4217 currency"),
        ("usd:500", "not an ISO 4217 currency"),
        ("DOLLAR:500", "not an ISO 4217 currency"),
        ("USD:500,USD:600", "names USD twice"),
        ("USD:five", "is not an amount"),
        ("USD:-1", "0 or more"),
        ("USD:0.001", "whole minor units"),
        ("JPY:0.5", "whole minor units"),
    ],
)
def test_a_malformed_value_is_refused_at_start_up_naming_the_variable(settings, raw, said):
    with pytest.raises(BadThresholds, match=said):
        parse_thresholds(raw)
    settings.APPROVAL_THRESHOLDS = raw
    (error,) = check_approvals()
    assert error.id == "billing.E010"
    assert "APPROVAL_THRESHOLDS" in error.msg
    assert said in error.msg
    assert error in run_checks(tags=["billing"])
    with pytest.raises(Exception, match="APPROVAL_THRESHOLDS"):
        refuse_bad_settings()


def test_a_threshold_that_is_not_a_string_is_refused(settings):
    settings.APPROVAL_THRESHOLDS = 500
    (error,) = check_approvals()
    assert (error.id, "APPROVAL_THRESHOLDS" in error.msg) == ("billing.E010", True)


@pytest.mark.parametrize("days", [0, -1, "7", None])
def test_the_expiry_is_a_positive_number_of_days(settings, days):
    settings.APPROVAL_EXPIRY_DAYS = days
    (error,) = check_approvals()
    assert (error.id, "APPROVAL_EXPIRY_DAYS" in error.msg) == ("billing.E011", True)


def test_the_defaults_pass(settings):
    settings.APPROVAL_THRESHOLDS = "USD:500,EUR:500,GBP:500,JPY:75000"
    settings.APPROVAL_EXPIRY_DAYS = 7
    assert check_approvals() == []
