"""The demo's world for an assistant: `acme-demo` with a paid and an open invoice (usage
priced by tiers), and the demo agent key, as `make run` loads them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from django.core.management import call_command
from django.test import override_settings


def load_demo(folder: Path) -> dict[str, str]:
    credentials = folder / "demo-credentials.json"
    with override_settings(DEBUG=True):  # demo_setup runs only on a developer's machine
        call_command("demo_setup", "--credentials", str(credentials), stdout=io.StringIO())
    return dict(json.loads(credentials.read_text()))


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header of a key's secret, as the test client takes it."""
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
