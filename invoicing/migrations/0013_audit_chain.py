"""Invoices once finalized (and each later move of their state), credit entries, credit notes
and refunds join the audit chain (billing_project/chain.py). Retry counters and leases are
bookkeeping, not decisions: they are left out of the hash."""

from django.db import migrations

from billing_project.db import chained


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0012_credit_entries_plural"), ("billing_project", "0006_audit_chain")]

    operations = [
        chained(
            "invoicing_invoice",
            exclude=("collection_attempts", "payment_retries", "next_payment_retry_at", "last_payment_error"),
            when="{row}.status <> 'draft'",
        ),
        chained("invoicing_creditentry"),
        chained("invoicing_creditnote"),
        chained("invoicing_creditnoteline"),
        chained("invoicing_refund", exclude=("submit_lease_until",)),
    ]
