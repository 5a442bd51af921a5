"""What a restored copy of the usage events must satisfy (billing_project/backup.py)."""

from __future__ import annotations

from billing_project.backup import invariant

invariant(
    # idempotency lives in the key table (usage/models.py UsageEventKey): an event without
    # its key could be stored a second time by a retry
    "every usage event has its idempotency key",
    "SELECT e.id FROM usage_usageevent e WHERE NOT EXISTS"
    " (SELECT 1 FROM usage_usageeventkey k WHERE k.event_id = e.id AND k.tenant_id = e.tenant_id"
    " AND k.origin = e.origin AND k.idempotency_key = e.idempotency_key AND k.use = e.use) ORDER BY e.id",
)
