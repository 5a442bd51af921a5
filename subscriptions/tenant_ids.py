"""The format of a tenant id (README, "Tenants and subscriptions"): the platform's own id,
1 to 200 characters of A-Z a-z 0-9 . _ : -, starting with a letter or a digit. No spaces,
no slashes, nothing that needs escaping in a URL path, a log line or a Stripe metadata
value. Migration subscriptions/0006 holds PostgreSQL to the same rule."""

from __future__ import annotations

import re

TENANT_ID_MAX_LENGTH = 200
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
TENANT_ID_RULE = "1-200 characters of A-Z a-z 0-9 . _ : - starting with a letter or a digit"


def tenant_id_problem(value: str) -> str | None:
    """Why `value` is not a valid tenant id, or None when it is."""
    if not value:
        return "required"
    if len(value) > TENANT_ID_MAX_LENGTH:
        return f"at most {TENANT_ID_MAX_LENGTH} characters"
    if TENANT_ID_PATTERN.fullmatch(value) is None:
        return f"not a tenant id: {TENANT_ID_RULE}"
    return None
