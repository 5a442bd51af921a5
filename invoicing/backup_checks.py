"""What a backup's manifest records of the books, and what a restored copy must satisfy
(billing_project/backup.py): SQL only, so it runs against any copy of the database."""

from __future__ import annotations

from billing_project.backup import invariant, manifest_section

manifest_section(
    "credit_ledger_balances",
    "SELECT t.external_id, e.currency, sum(e.amount)::text, count(*) FROM invoicing_creditentry e"
    " JOIN subscriptions_tenant t ON t.id = e.tenant_id GROUP BY 1, 2 ORDER BY 1, 2",
)
manifest_section(
    "number_series",  # the last number handed out per series and year: invoices and credit notes
    "SELECT series, year, last_number FROM invoicing_invoicesequence ORDER BY 1, 2",
)
manifest_section(
    "invoice_totals",  # per currency and status: how many and how much
    "SELECT currency, status, count(*), sum(total)::text FROM invoicing_invoice"
    " WHERE status <> 'draft' GROUP BY 1, 2 ORDER BY 1, 2",
)

invariant(
    "every series is gapless: numbers 1..last, each once",
    """
    WITH issued AS (
        SELECT number FROM invoicing_invoice WHERE number IS NOT NULL
        UNION ALL SELECT number FROM invoicing_creditnote
    )
    SELECT s.series, s.year, s.last_number, count(i.number) AS issued,
           coalesce(max(substring(i.number FROM length(s.series) + 7)::bigint), 0) AS highest
    FROM invoicing_invoicesequence s
    LEFT JOIN issued i ON i.number LIKE s.series || '-' || s.year || '-%'
    GROUP BY s.series, s.year, s.last_number
    HAVING count(i.number) <> s.last_number
        OR coalesce(max(substring(i.number FROM length(s.series) + 7)::bigint), 0) <> s.last_number
    """,
)
invariant(
    "every number belongs to a series",
    """
    SELECT number FROM (
        SELECT number FROM invoicing_invoice WHERE number IS NOT NULL
        UNION ALL SELECT number FROM invoicing_creditnote
    ) issued
    WHERE NOT EXISTS (
        SELECT 1 FROM invoicing_invoicesequence s WHERE issued.number LIKE s.series || '-' || s.year || '-%'
    )
    """,
)
invariant(
    "a finalized invoice totals the sum of its lines, and its subtotal, tax and credit",
    """
    SELECT i.number, i.total::text, coalesce(sum(l.amount), 0)::text
    FROM invoicing_invoice i LEFT JOIN invoicing_invoiceline l ON l.invoice_id = i.id
    WHERE i.status <> 'draft'
    GROUP BY i.id
    HAVING i.total <> coalesce(sum(l.amount), 0) OR i.total <> i.subtotal + i.tax - i.credit_applied
    """,
)
invariant(
    "a credit note totals the sum of its lines",
    """
    SELECT n.number, n.total::text, coalesce(sum(l.amount), 0)::text
    FROM invoicing_creditnote n LEFT JOIN invoicing_creditnoteline l ON l.credit_note_id = n.id
    GROUP BY n.id HAVING n.total <> coalesce(sum(l.amount), 0)
    """,
)
invariant(
    "no credit balance below zero",
    "SELECT tenant_id, currency, sum(amount)::text FROM invoicing_creditentry GROUP BY 1, 2 HAVING sum(amount) < 0",
)
invariant(
    "credit applied to an invoice is its ledger applications",
    """
    SELECT i.number, i.credit_applied::text, coalesce(-sum(e.amount), 0)::text
    FROM invoicing_invoice i
    LEFT JOIN invoicing_creditentry e ON e.invoice_id = i.id AND e.kind = 'application'
    WHERE i.status <> 'draft'
    GROUP BY i.id HAVING i.credit_applied <> coalesce(-sum(e.amount), 0)
    """,
)
