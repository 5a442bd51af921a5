"""manage.py demo_totp [--user approver] — the demo admin's (or approver's) current
authenticator code, for a developer who has not added its key to an app yet. Runs only
with DEBUG on (make run's server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_project.embedded import data_dir

from .demo_setup import DEMO_ADMIN, DEMO_APPROVER, _base32


class Command(BaseCommand):
    help = "Print the demo admin's or approver's current TOTP code (DEBUG only)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--credentials", default=None, help="the demo secrets file")
        parser.add_argument("--user", default=DEMO_ADMIN, choices=[DEMO_ADMIN, DEMO_APPROVER], help="whose code")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_totp prints a second factor: it runs only with DEBUG=1, on a developer's machine.")
        path = Path(options["credentials"] or data_dir() / "demo-credentials.json")
        username = options["user"]
        key = json.loads(path.read_text()).get(f"{username}_totp_key") if path.exists() else None
        user = get_user_model().objects.filter(username=username).first()
        device = next(
            (d for d in TOTPDevice.objects.filter(user=user, confirmed=True) if key and _base32(d.bin_key) == key), None
        )
        if device is None:
            raise CommandError(f"The demo {username}'s authenticator is not the demo's any more (replaced).")
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        self.stdout.write(f"{totp.token():0{device.digits}d}")
