"""What the benches share: a free loopback port, and the default database's connection
parameters (the embedded engine's socket folder is in OPTIONS, not HOST)."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_params() -> dict[str, Any]:
    from django.conf import settings

    base = settings.DATABASES["default"]
    found = {
        "host": base.get("HOST") or base.get("OPTIONS", {}).get("host"),
        "port": base.get("PORT") or None,
        "user": base["USER"],
        "password": base.get("PASSWORD") or None,
    }
    return {k: v for k, v in found.items() if v}
