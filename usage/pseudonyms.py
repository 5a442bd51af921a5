"""Personal property values of usage events, stored as keyed pseudonyms.

A metric may declare properties `personal` (CATALOG.md): their values identify a person
(a user's id, an email). Ingestion stores, counts and dedups only `psn_` + HMAC-SHA256 of
(tenant, key, value) under PSEUDONYM_KEY, never the value: the same value of one tenant is
always the same pseudonym, so unique counts and idempotent retries work as before, while
the append-only table needs no rewrite on erasure and another tenant's same value is
another pseudonym (no linking across tenants). The value is the text PostgreSQL's `->>`
reads from the JSON (1 and "1" are one value, as they are for a property in clear).
Rotating PSEUDONYM_KEY starts new pseudonyms: do it at a period boundary (README)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings

PREFIX = "psn_"


def pseudonym(*, tenant_id: int, key: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    message = f"{tenant_id}\x1f{key}\x1f{text}".encode()
    return PREFIX + hmac.new(settings.PSEUDONYM_KEY.encode(), message, hashlib.sha256).hexdigest()[:40]
