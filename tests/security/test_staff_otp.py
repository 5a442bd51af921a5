"""Staff who move money log in with two factors (billing_project/staff_otp.py): finance,
finance-approver and superusers need their authenticator's code; until they have one,
the admin is only the page that sets it up. Codes are computed from the device's key,
as an authenticator app computes them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = [pytest.mark.django_db]
PASSWORD = "a-long-enough-password-1"


def code(device: TOTPDevice) -> str:
    """The code an authenticator app shows now for the device's key."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def staff(name: str, group: str | None = None, *, is_superuser: bool = False) -> User:
    user = User.objects.create_user(name, password=PASSWORD, is_staff=True, is_superuser=is_superuser)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def login(client: Client, username: str, token: str = "") -> int:
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": PASSWORD, "otp_token": token}
    )
    return response.status_code


def test_finance_without_an_authenticator_gets_only_the_enrolment_page(db):
    staff("fin", "finance")
    client = Client()
    assert login(client, "fin") == 302
    assert client.get("/admin/")["Location"] == "/admin/otp/enroll/"
    assert client.get("/admin/invoicing/invoice/")["Location"] == "/admin/otp/enroll/"
    page = client.get("/admin/otp/enroll/")
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert b"<svg" in page.content  # the QR code, drawn server-side
    device = TOTPDevice.objects.get(user__username="fin", confirmed=False)
    secret = re.search(rb'class="otp-secret">([A-Z2-7 ]+)<', page.content)
    assert secret, "the key is shown for typing by hand"
    refused = client.post("/admin/otp/enroll/", {"token": code(device), "password": "not-it"})
    assert refused.status_code == 200
    assert b"not your password" in refused.content
    assert client.post("/admin/otp/enroll/", {"token": code(device), "password": PASSWORD})["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed


@pytest.mark.parametrize("group", ["finance", "finance-approver", None])
def test_once_enrolled_the_code_is_required(db, group):
    user = staff("ana", group, is_superuser=group is None)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()
    assert login(client, "ana") == 200  # no code: the form again
    assert "_auth_user_id" not in client.session
    assert login(client, "ana", code(device)) == 302
    assert client.get("/admin/").status_code == 200


def test_a_wrong_code_is_refused_at_login_and_at_enrolment(db):
    user = staff("ana", "finance")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    wrong = "000000" if code(device) != "000000" else "111111"
    client = Client()
    assert login(client, "ana", wrong) == 200
    assert "_auth_user_id" not in client.session
    staff("bo", "finance")
    other = Client()
    assert login(other, "bo") == 302
    other.get("/admin/otp/enroll/")
    response = other.post("/admin/otp/enroll/", {"token": wrong, "password": PASSWORD})
    assert response.status_code == 200
    assert b"does not match" in response.content
    assert not TOTPDevice.objects.filter(user__username="bo", confirmed=True).exists()


def test_a_second_password_only_session_cannot_enrol_another_authenticator(db):
    """Two sessions with the password alone; one enrols. The other may not add a device of
    its own and pass as verified: it is logged out and must show the enrolled device's code."""
    staff("fin", "finance")
    first, second = Client(), Client()
    assert login(first, "fin") == 302
    assert login(second, "fin") == 302
    first.get("/admin/otp/enroll/")
    device = TOTPDevice.objects.get(user__username="fin", confirmed=False)
    assert first.post("/admin/otp/enroll/", {"token": code(device), "password": PASSWORD})["Location"] == "/admin/"
    response = second.get("/admin/otp/enroll/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "_auth_user_id" not in second.session
    assert second.post("/admin/otp/enroll/", {"token": code(device), "password": PASSWORD}).status_code == 302
    assert TOTPDevice.objects.filter(user__username="fin").count() == 1
    assert second.get("/admin/console/").status_code == 302  # still nothing of the admin


def test_a_session_whose_device_was_deleted_cannot_enrol_without_the_password(db):
    """Losing the phone: a superuser deletes the device. A session kept from before (or a
    stolen cookie) is sent to enrolment, where the password is asked again."""
    user = staff("appr", "finance-approver")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()
    assert login(client, "appr", code(device)) == 302
    assert client.get("/admin/").status_code == 200
    device.delete()
    assert client.get("/admin/")["Location"] == "/admin/otp/enroll/"
    client.get("/admin/otp/enroll/")
    new = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post("/admin/otp/enroll/", {"token": code(new), "password": ""})
    assert response.status_code == 200
    new.refresh_from_db()
    assert not new.confirmed
    assert client.get("/admin/approvals/approvalrequest/")["Location"] == "/admin/otp/enroll/"


def test_a_session_that_never_showed_a_code_is_sent_back_to_log_in(db):
    user = staff("ana", "finance")
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()
    client.force_login(user)  # a password-only session (from before the enrolment, say)
    response = client.get("/admin/invoicing/invoice/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("group", ["auditor", "support"])
def test_staff_who_move_no_money_may_log_in_with_a_password(db, group):
    staff("reader", group)
    client = Client()
    assert login(client, "reader") == 302
    assert client.get("/admin/").status_code == 200


def test_the_enrolment_page_needs_a_logged_in_staff_member(db):
    response = Client().get("/admin/otp/enroll/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not TOTPDevice.objects.exists()


def test_the_demo_admin_is_enrolled_and_demo_totp_prints_its_current_code(settings, tmp_path):
    import io
    import json

    from django.core.management import call_command

    settings.DEBUG = True
    credentials = tmp_path / "c.json"
    call_command("demo_setup", "--credentials", str(credentials), stdout=io.StringIO())
    creds = json.loads(credentials.read_text())
    device = TOTPDevice.objects.get(user__username="admin", confirmed=True)
    out = io.StringIO()
    call_command("demo_totp", "--credentials", str(credentials), stdout=out)
    assert out.getvalue().strip() == code(device)
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "admin", "password": creds["admin_password"], "otp_token": out.getvalue().strip()},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    # a re-run keeps the same key
    call_command("demo_setup", "--credentials", str(credentials), stdout=io.StringIO())
    assert json.loads(credentials.read_text())["admin_totp_key"] == creds["admin_totp_key"]
