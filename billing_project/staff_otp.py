"""A second factor for staff who move money: TOTP (django-otp) for `finance`,
`finance-approver` and superusers.

- Login: the admin's login form asks for the authenticator's 6-digit code as well. For
  staff who must use a second factor and have enrolled, the code is required; the
  session then counts as verified (django-otp stores the device in it).
- Enrolment: staff who must use a second factor and have no device yet can log in with
  their password, but every admin page sends them to /admin/otp/enroll/ until they have
  scanned the QR code (or typed the key) into an authenticator app and confirmed it with
  a code and their password again. Nothing else of the admin is theirs before. Once a
  device exists, a session that has not shown its code is logged out there too: it cannot
  add a second device.
- A session that was not verified with a code (one from before the enrolment, say) is
  sent back to the login page.
Other staff (auditor, support) may enrol too; then their code is asked for as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import logout
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_totp.models import TOTPDevice

from .login_throttle import username_wait_seconds
from .net import client_address
from .staff import FINANCE, FINANCE_APPROVER

SECOND_FACTOR_GROUPS = (FINANCE, FINANCE_APPROVER)
ENROL_PATH = "/admin/otp/enroll/"
# pages a staff member who still owes a second factor may open
_OPEN = ("/admin/otp/enroll/", "/admin/logout/", "/admin/login/", "/admin/jsi18n/")


def requires_second_factor(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_staff", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    return bool(user.groups.filter(name__in=SECOND_FACTOR_GROUPS).exists())  # type: ignore[union-attr]


def is_verified(user: Any) -> bool:
    verified = getattr(user, "is_verified", None)
    return bool(verified()) if callable(verified) else False


class StaffLoginForm(OTPAdminAuthenticationForm):  # type: ignore[misc]
    """Username, password and the authenticator's code. The code is required of staff who
    have enrolled a device (and of all who must, once they have); a staff member who must
    but has not enrolled yet gets in to enrol, and nowhere else."""

    otp_token = forms.CharField(
        required=False,
        label="Authenticator code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self) -> dict[str, Any]:
        # before any password is checked: a username being sprayed from many addresses
        # waits here, and neither the refusal nor its wait is counted as another failure
        username = (self.data.get("username") or "").strip()
        wait = username_wait_seconds(username, client_address(self.request)) if username and self.request else 0
        if wait > 0:
            raise forms.ValidationError(
                f"Too many failed logins for this username from elsewhere: wait {int(wait) + 1} seconds and try "
                "again (from an address you have logged in from before, you never wait).",
                code="slowed",
            )
        return dict(super().clean())

    def _chosen_device(self, user: Any) -> Any:
        # one authenticator per staff member: theirs, without a device menu on the form
        chosen = super()._chosen_device(user)
        if chosen is not None:
            return chosen
        return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()

    def clean_otp(self, user: Any) -> None:
        if user is None:
            return
        if not user_has_device(user, confirmed=True):
            user.otp_device = None  # nothing to verify yet: the gate sends them to enrol
            return
        super().clean_otp(user)


class StaffSecondFactorMiddleware:
    """After authentication on staff pages: a staff member who must use a second factor and
    whose session is not verified by one may open the enrolment page (no device yet) or
    log in again (a device, but this session never showed its code), nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if not path.startswith("/admin/") or path.startswith(_OPEN):
            return self.get_response(request)
        user = request.user
        if requires_second_factor(user) and not is_verified(user):
            if user_has_device(user, confirmed=True):
                logout(request)
                return HttpResponseRedirect(f"{reverse('admin:login')}?next={path}")
            return HttpResponseRedirect(ENROL_PATH)
        return self.get_response(request)


class ConfirmForm(forms.Form):
    password = forms.CharField(
        label="Your password, again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="A second factor is bound to the person who knows the password, not to whoever holds the session.",
    )
    token = forms.CharField(
        label="Code from your authenticator",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return str(image.to_string(encoding="unicode"))


def enrol_view(request: HttpRequest) -> HttpResponse:
    """Add an authenticator: scan the QR code (or type the key), confirm with a code."""
    user = request.user
    if user_has_device(user, confirmed=True):
        if is_verified(user):
            return HttpResponseRedirect(reverse("admin:index"))
        # An authenticator exists (enrolled from another session, say): this session shows its
        # code at the login, or it could add a second device and pass as verified.
        logout(request)
        return HttpResponseRedirect(f"{reverse('admin:login')}?next={reverse('admin:index')}")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    form = ConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # the password again: a session kept after its device was deleted, or a stolen cookie,
        # must not be enough to bind a new authenticator
        if not user.check_password(form.cleaned_data["password"]):
            form.add_error("password", "That is not your password.")
        elif device.verify_token(form.cleaned_data["token"].strip()):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            return HttpResponseRedirect(reverse("admin:index"))
        else:
            form.add_error("token", "That code does not match. Check the time on your phone and try the current one.")
    key = device.bin_key
    import base64

    secret = base64.b32encode(key).decode().rstrip("=")
    context = {
        **admin.site.each_context(request),
        "title": "Set up your authenticator",
        "form": form,
        "qr": mark_safe(_qr_svg(device.config_url)),  # noqa: S308  our own SVG, drawn from our URL
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "required": requires_second_factor(user),
        "issuer": getattr(settings, "OTP_TOTP_ISSUER", "Billing"),
    }
    response = TemplateResponse(request, "admin/otp_enroll.html", context)
    response["Cache-Control"] = "no-store"  # the key is on this page
    return response


enrol = admin.site.admin_view(enrol_view)
