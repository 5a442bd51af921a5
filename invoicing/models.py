"""Invoices, their lines, gapless number sequences and the credit ledger.

A finalized invoice never changes: its amounts, lines and number are frozen by a
PostgreSQL trigger (migration 0002), and only its collection status moves on
(open → paid | void | uncollectible). A mistake is corrected by a new record.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from billing_project.money import money_display
from billing_project.personal_data import EncryptedBinaryField, PartlyEncryptedJSONField

# Amounts rounded to a minor unit: at most 4 digits after the point (CLF).
AMOUNT_DIGITS, AMOUNT_PLACES = 20, 4


# A tax line's label begins so when Stripe Tax says the buyer accounts for the VAT (an EU
# B2B supply across borders): the invoice then prints the note an EU invoice needs.
REVERSE_CHARGE = "Reverse charge"
# The buyer's values encrypted at rest; its account reference and country stay plain (the
# tenant's own are: the platform's id, where tax was due), and the invoice guard reads them.
BUYER_PERSONAL = ("name", "address", "tax_id", "email")


class InvoiceSequence(models.Model):
    """The last number handed out per series and year. Finalization locks the row, so
    numbers are consecutive and a rolled-back finalization returns its number."""

    series = models.CharField(max_length=10)
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="invoicesequence_series_year")]

    def __str__(self) -> str:
        return f"{self.series}-{self.year}: {self.last_number}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"  # finalized, awaiting payment
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    class Tax(models.TextChoices):
        NOT_CALCULATED = "not_calculated", "No tax calculated (Stripe Tax not enabled)"
        CALCULATED = "calculated", "Tax calculated by Stripe Tax"

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, related_name="invoices", null=True, blank=True
    )
    # The billing period whose usage this invoice bills in arrears: at most one invoice
    # per period, so a rerun of the period close can never bill a period twice.
    period = models.OneToOneField(
        "subscriptions.BillingPeriod", on_delete=models.PROTECT, related_name="invoice", null=True, blank=True
    )
    # Before billing periods were records, the boundary event an invoice closed (kept for
    # invoices issued then; frozen like the rest of a finalized invoice).
    boundary = models.OneToOneField(
        "subscriptions.SubscriptionEvent", on_delete=models.PROTECT, related_name="invoice", null=True, blank=True
    )
    status = models.CharField(max_length=13, choices=Status.choices, default=Status.DRAFT)
    currency = models.CharField(max_length=3)
    series = models.CharField(max_length=10, default="INV")
    number = models.CharField(max_length=32, unique=True, null=True, blank=True)
    period_start = models.DateTimeField(help_text="Usage billed in arrears from here…")
    period_end = models.DateTimeField(help_text="…to here (half-open).")
    subtotal = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, default=0)
    tax = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, default=0)
    credit_applied = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, default=0)
    total = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, default=0)
    tax_status = models.CharField(max_length=14, choices=Tax.choices, default=Tax.NOT_CALCULATED)
    seller = models.JSONField(default=dict, blank=True, help_text="Seller details as printed, frozen at finalization.")
    buyer = PartlyEncryptedJSONField(
        default=dict,
        blank=True,
        personal=BUYER_PERSONAL,
        help_text="Buyer details as printed, frozen at finalization (its personal values encrypted at rest).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    drafted_at = models.DateTimeField(
        null=True,
        editable=False,
        db_default=Now(),
        help_text="When the draft was written, on the database's clock (the one usage's received_at is on).",
    )
    finalized_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # collection: may change after finalization
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    uncollectible_at = models.DateTimeField(null=True, blank=True)
    stripe_invoice_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_number = models.CharField(max_length=64, blank=True, help_text="Stripe's own number: a reference only.")
    collection_attempts = models.PositiveIntegerField(default=0)
    # dunning: our own retries of a failed payment, on DUNNING_RETRY_DAYS
    payment_retries = models.PositiveSmallIntegerField(default=0)
    next_payment_retry_at = models.DateTimeField(null=True, blank=True)
    last_payment_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="invoice_number_iff_finalized",
                condition=(Q(status="draft") & Q(number__isnull=True))
                | (~Q(status="draft") & Q(number__isnull=False) & Q(finalized_at__isnull=False)),
            ),
            models.CheckConstraint(name="invoice_total_not_negative", condition=Q(total__gte=0)),
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="invoice_tenant_created")]

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        BASE_FEE = "base_fee"
        USAGE = "usage"
        PRORATION = "proration"
        LATE_USAGE = "late_usage"
        CREDIT = "credit"
        TAX = "tax"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.CharField(max_length=300)
    metric = models.CharField(max_length=100, blank=True)
    quantity = models.DecimalField(max_digits=30, decimal_places=6, null=True, blank=True)
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)
    currency = models.CharField(max_length=3, help_text="Always the invoice's (a trigger refuses another).")
    billing_period = models.ForeignKey(
        "subscriptions.BillingPeriod",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoice_lines",
        help_text="The period whose base fee or usage this line bills.",
    )
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    # how the amount was reached: model, aggregation, tiers, events behind it
    explanation = models.JSONField(default=dict, blank=True)
    proration_item = models.OneToOneField(
        "subscriptions.ProrationItem", on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_line"
    )

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoiceline_position"),
            # a period's base fee is billed once, however the closes race
            models.UniqueConstraint(
                fields=["billing_period"], condition=Q(kind="base_fee"), name="invoiceline_one_fee_per_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {money_display(self.amount, self.currency)}"


class CreditEntry(models.Model):
    """The credit ledger: append-only. A tenant's balance in a currency is the sum of
    its entries; grants are positive, applications to invoices negative."""

    class Kind(models.TextChoices):
        GRANT = "grant"
        APPLICATION = "application"
        REVERSAL = "reversal"  # an application given back (its invoice was voided)
        EXPIRY = "expiry"  # what was left of a grant when it expired

    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="credit_entries")
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=11, choices=Kind.choices)
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="credits")
    reason = models.TextField()
    actor = models.CharField(max_length=200)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A grant's unused part expires at this instant (used first, before others)."
    )
    # A foreign key, not one-to-one: credit given back to an expired grant (its invoice
    # voided) expires again, by a second entry.
    expired_grant = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="expiries",
        help_text="The grant it expires.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "credit entries"
        constraints = [
            models.CheckConstraint(
                name="creditentry_sign_matches_kind",
                condition=(Q(kind__in=["grant", "reversal"]) & Q(amount__gt=0))
                | (Q(kind="application") & Q(amount__lt=0) & Q(invoice__isnull=False))
                | (Q(kind="expiry") & Q(amount__lt=0) & Q(expired_grant__isnull=False)),
            ),
            models.CheckConstraint(
                name="creditentry_only_grants_expire", condition=Q(expires_at__isnull=True) | Q(kind="grant")
            ),
            models.CheckConstraint(
                name="creditentry_only_expiries_name_a_grant",
                condition=Q(expired_grant__isnull=True) | Q(kind="expiry"),
            ),
        ]
        indexes = [models.Index(fields=["tenant", "currency"], name="creditentry_tenant_currency")]

    def __str__(self) -> str:
        return f"{self.kind} {money_display(self.amount, self.currency)}"


class CreditNote(models.Model):
    """A correction of a finalized invoice: never an edit of it. Numbered gaplessly in its
    own series (CN-2026-000001) and append-only. How it is settled: as credit (the amount
    goes to the tenant's credit balance, a ledger grant, where the next invoices use it) or
    by a refund (the money went back in cash through Stripe: no ledger grant)."""

    class Settlement(models.TextChoices):
        CREDIT = "credit", "Credit to the tenant's balance"
        REFUND = "refund", "Refunded in cash (no credit granted)"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=32, unique=True)
    currency = models.CharField(max_length=3)
    total = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)
    settlement = models.CharField(
        max_length=6,
        choices=Settlement.choices,
        default=Settlement.CREDIT,
        db_default=Settlement.CREDIT,
        help_text="Credit: the amount went to the tenant's credit balance. Refund: it went back in cash.",
    )
    reason = models.TextField()
    actor = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.CheckConstraint(name="creditnote_total_positive", condition=Q(total__gt=0))]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    invoice_line = models.ForeignKey(InvoiceLine, on_delete=models.PROTECT, related_name="credit_note_lines")
    description = models.CharField(max_length=300)
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)

    class Meta:
        ordering = ["credit_note", "id"]
        constraints = [models.CheckConstraint(name="creditnoteline_amount_positive", condition=Q(amount__gt=0))]

    def __str__(self) -> str:
        return f"{self.description}: {money_display(self.amount, self.credit_note.currency)}"


class Refund(models.Model):
    """Money paid on an invoice going back to the customer, in full or in part: through
    Stripe when the invoice was paid there, else paid out by staff outside Stripe (a bank
    transfer, its reference on the refund). Its life: requested (or awaiting approval first,
    above the four-eyes threshold) → submitted to Stripe → succeeded | failed; a refund paid
    out by staff goes from requested to succeeded, never to Stripe. A succeeded refund
    corrects the books with a credit note of the same amount settled by refund (no ledger
    credit), so an invoice's total paid, its refunds and its credit notes always reconcile.
    Every refund not failed reserves its amount: the refunds of an invoice never exceed what
    was paid."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested (to be sent to Stripe, or booked as paid out by staff)"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting a second person's approval"
        SUBMITTED = "submitted", "Submitted to Stripe (awaiting its confirmation)"
        SUCCEEDED = "succeeded", "Succeeded (money returned, credit note issued)"
        FAILED = "failed", "Failed (nothing refunded, books unchanged)"

    class Method(models.TextChoices):
        STRIPE = "stripe", "Through Stripe (the invoice was paid there)"
        MANUAL = "manual", "Paid out by staff outside Stripe (a bank transfer)"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="refunds")
    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)
    currency = models.CharField(max_length=3, help_text="Always the invoice's.")
    reason = models.TextField(help_text="Why the money goes back, as the staff member gave it.")
    status = models.CharField(max_length=17, choices=Status.choices, default=Status.REQUESTED)
    request_key = models.CharField(
        max_length=255, help_text="The request's idempotency token: the same request sent again is this refund."
    )
    requested_by = models.CharField(max_length=200, help_text="Who asked: staff:<name>, agent:<key>, …")
    method = models.CharField(
        max_length=6,
        choices=Method.choices,
        default=Method.STRIPE,
        db_default=Method.STRIPE,
        help_text="How the money goes back: through Stripe when the invoice was paid there; else paid out by "
        "staff outside Stripe (the invoice was paid by bank transfer and marked paid by staff).",
    )
    payout_reference = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="A refund paid out by staff: the reference of their payout (the bank transfer's id).",
    )
    stripe_refund_id = models.CharField(max_length=255, blank=True, default="")
    failure_reason = models.TextField(blank=True, help_text="Why nothing was refunded (Stripe's reason, a rejection).")
    credit_note = models.OneToOneField(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="refund"
    )
    # While a submission to Stripe runs: a concurrent one leaves the refund alone until then.
    # Past it (the process died mid-call), the sweeper submits again with the same key.
    submit_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("refund_invoice", "Can refund paid invoices")]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "request_key"], name="refund_request_key_per_invoice"),
            models.UniqueConstraint(
                fields=["stripe_refund_id"], condition=~Q(stripe_refund_id=""), name="refund_stripe_id_unique"
            ),
            models.CheckConstraint(name="refund_amount_positive", condition=Q(amount__gt=0)),
            # succeeded exactly when the books were corrected; at Stripe once submitted
            models.CheckConstraint(
                name="refund_succeeded_iff_credit_note",
                condition=(Q(status="succeeded") & Q(credit_note__isnull=False) & Q(succeeded_at__isnull=False))
                | (~Q(status="succeeded") & Q(credit_note__isnull=True)),
            ),
            models.CheckConstraint(
                name="refund_at_stripe_once_submitted",
                condition=Q(method="manual") | ~Q(status__in=["submitted", "succeeded"]) | ~Q(stripe_refund_id=""),
            ),
            # paid out by staff: with their payout's reference, never at Stripe, never submitted there
            models.CheckConstraint(
                name="refund_method_matches_its_references",
                condition=(Q(method="stripe") & Q(payout_reference=""))
                | (Q(method="manual") & ~Q(payout_reference="") & Q(stripe_refund_id="") & ~Q(status="submitted")),
            ),
            models.CheckConstraint(
                name="refund_failed_has_reason",
                condition=~Q(status="failed") | (Q(failed_at__isnull=False) & ~Q(failure_reason="")),
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="refund_status_created")]

    def __str__(self) -> str:
        return f"refund {self.pk} of {self.invoice_id}: {money_display(self.amount, self.currency)} ({self.status})"


class IssuedDocument(models.Model):
    """The PDF of a finalized invoice or a credit note, rendered once when it was issued
    (invoicing/pdf.py), with its SHA-256: served as these bytes for ever. A trigger refuses
    every change but one: after an erased tenant's retention has ended, the re-rendering
    without its buyer (in a transaction that says so, as the invoice's own guard does)."""

    invoice = models.OneToOneField(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="issued_document"
    )
    credit_note = models.OneToOneField(
        CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="issued_document"
    )
    content = EncryptedBinaryField()  # the PDF prints the buyer: encrypted at rest
    sha256 = models.CharField(max_length=64)
    rendered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="issueddocument_of_one",
                condition=Q(invoice__isnull=False, credit_note__isnull=True)
                | Q(invoice__isnull=True, credit_note__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"PDF of {self.invoice or self.credit_note}"


class StripeReconciliation(models.Model):
    """One day's comparison of our invoices, payments and refunds with Stripe's, as
    dj-stripe mirrors them (invoicing/reconciliation.py): what was compared, when, and each
    mismatch. An operational report, not a financial record: a run again the same day
    replaces that day's findings."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        MATCHED = "matched", "Everything matched"
        MISMATCHED = "mismatched", "Mismatches found"

    day = models.DateField(unique=True)
    window_start = models.DateTimeField(help_text="Records and Stripe objects created from here…")
    cutoff = models.DateTimeField(help_text="…until here (newer ones may still be on their way between us).")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    compared = models.JSONField(default=dict, help_text="How many of ours and of Stripe's were compared, per kind.")
    mirror_failures = models.JSONField(
        default=list, help_text="Stripe objects dj-stripe could not mirror: [id, error]."
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"reconciliation {self.day.isoformat()}"


class StripeMismatch(models.Model):
    """One way our books and Stripe's disagree, found by a reconciliation."""

    class Kind(models.TextChoices):
        MISSING_AT_STRIPE = "missing_at_stripe", "Ours names a Stripe object Stripe does not have"
        UNKNOWN_AT_STRIPE = "unknown_at_stripe", "At Stripe, with no record of ours"
        DUPLICATE_AT_STRIPE = "duplicate_at_stripe", "A second Stripe object for one record of ours"
        AMOUNT = "amount", "Amounts differ"
        CURRENCY = "currency", "Currencies differ"
        STATUS = "status", "Statuses differ"
        NOT_MIRRORED = "not_mirrored", "dj-stripe could not mirror the Stripe object"

    class Object(models.TextChoices):
        INVOICE = "invoice"
        PAYMENT = "payment"
        CHARGE = "charge"
        REFUND = "refund"
        CUSTOMER = "customer"

    reconciliation = models.ForeignKey(StripeReconciliation, on_delete=models.CASCADE, related_name="mismatches")
    kind = models.CharField(max_length=19, choices=Kind.choices)
    object_type = models.CharField(max_length=8, choices=Object.choices)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    stripe_id = models.CharField(max_length=255, blank=True)
    ours = models.CharField(max_length=200, blank=True, help_text="What our books say.")
    theirs = models.CharField(max_length=200, blank=True, help_text="What Stripe says.")
    detail = models.TextField()

    class Meta:
        ordering = ["reconciliation", "object_type", "kind", "id"]

    def __str__(self) -> str:
        return f"{self.object_type} {self.kind} {self.stripe_id}".strip()
