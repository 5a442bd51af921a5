"""Invoices and credit notes as PDF (reportlab), rendered once when they are issued and kept
with their SHA-256 (IssuedDocument): the document a customer got is the same bytes when
fetched years later, whatever reportlab, the fonts or the templates have become since.

Rendered with reportlab's `invariant` mode (no creation time, a fixed document id) from the
values frozen on the invoice: the same invoice renders to the same bytes. DejaVu Sans from
Debian's fonts-dejavu-core when the machine has it (most scripts' letters), else the Vera
font reportlab ships (Latin); either is embedded, so a reader needs no fonts of its own.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import reportlab
from django.db import transaction
from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing_project.money import money_display

from .documents import invoice_view, party_lines
from .models import CreditNote, Invoice, IssuedDocument

_FONTS = [
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (Path(reportlab.__file__).parent / "fonts" / "Vera.ttf", Path(reportlab.__file__).parent / "fonts" / "VeraBd.ttf"),
]
_registered: tuple[str, str] | None = None


def _fonts() -> tuple[str, str]:
    global _registered
    if _registered is None:
        regular, bold = next((r, b) for r, b in _FONTS if r.exists() and b.exists())
        pdfmetrics.registerFont(TTFont("BillingSans", str(regular)))
        pdfmetrics.registerFont(TTFont("BillingSans-Bold", str(bold)))
        _registered = ("BillingSans", "BillingSans-Bold")
    return _registered


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
    return {
        "title": ParagraphStyle("title", fontName=bold, fontSize=16, leading=20, spaceAfter=4),
        "text": ParagraphStyle("text", fontName=regular, fontSize=9, leading=12),
        "small": ParagraphStyle(
            "small", fontName=regular, fontSize=8, leading=10, textColor=colors.HexColor("#555555")
        ),
        "head": ParagraphStyle("head", fontName=bold, fontSize=9, leading=12),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _parties(seller: Sequence[str], buyer: Sequence[str], st: dict[str, ParagraphStyle], to: str) -> Table:
    cells = [
        [_p("From", st["head"]), _p(to, st["head"])],
        [_p("\n".join(seller), st["text"]), _p("\n".join(buyer), st["text"])],
    ]
    table = Table(cells, colWidths=[85 * mm, 85 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return table


def _amounts(rows: list[list[Any]], st: dict[str, ParagraphStyle], totals_from: int) -> Table:
    regular, bold = _fonts()
    table = Table(rows, colWidths=[110 * mm, 25 * mm, 35 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, 0), bold),
                ("FONTNAME", (0, 1), (-1, -1), regular),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                ("LINEBELOW", (0, 1), (-1, totals_from - 1), 0.25, colors.HexColor("#cccccc")),
                ("LINEABOVE", (1, -1), (-1, -1), 0.8, colors.black),
                ("FONTNAME", (0, -1), (-1, -1), bold),
            ]
        )
    )
    return table


def _build(story: list[Any], title: str) -> bytes:
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=title,
        author="",
        subject="",
        creator="billing",
        invariant=1,  # no creation date, a fixed id: the same document renders to the same bytes
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )
    doc.build(story)
    return out.getvalue()


def _date(value: Any) -> str:
    return f"{value:%Y-%m-%d}" if value else "—"


def invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice as issued (never a receipt: its later payment is not part of it)."""
    st = _styles()
    view = invoice_view(invoice)
    story: list[Any] = [
        _p(f"Invoice {invoice.number}", st["title"]),
        _p(
            f"Issued {_date(invoice.finalized_at)} · Due {_date(invoice.due_at)} · Supply period (billing period) "
            f"{_date(invoice.period_start)} – {_date(invoice.period_end)} (UTC, end exclusive)",
            st["text"],
        ),
        Spacer(1, 5 * mm),
        _parties(view["seller"], view["buyer"], st, "Bill to"),
        Spacer(1, 6 * mm),
    ]
    rows: list[list[Any]] = [["Description", "Quantity", f"Amount ({invoice.currency})"]]
    for line in view["lines"]:
        text = line["description"] + "".join(f"\n  {row}" for row in line["explanation"])
        rows.append([_p(text, st["text"]), line["quantity"], line["amount"]])
    totals_from = len(rows)
    rows.append(["", "Subtotal", view["subtotal"]])
    rows += [["", _p(d, st["text"]), a] for d, a in view["taxes"]] or [["", "Tax", view["tax"]]]
    if view["credit_applied"]:
        rows.append(["", "Credit applied", view["credit_applied"]])
    rows.append(["", "Total due", view["total"]])
    story += [_amounts(rows, st, totals_from), Spacer(1, 5 * mm)]
    if view["reverse_charge"]:
        story.append(
            _p(
                "Reverse charge: the VAT on this supply is to be accounted for by the recipient "
                "(Article 196, Council Directive 2006/112/EC).",
                st["small"],
            )
        )
    if invoice.tax_status == Invoice.Tax.NOT_CALCULATED:
        story.append(_p("No tax has been calculated on this invoice (Stripe Tax is not enabled).", st["small"]))
    return _build(story, f"Invoice {invoice.number}")


def credit_note_pdf(note: CreditNote) -> bytes:
    """A credit note names the invoice it corrects, with that invoice's parties."""
    st = _styles()
    invoice = note.invoice
    currency = note.currency
    settled = (
        "refunded to the customer"
        if note.settlement == CreditNote.Settlement.REFUND
        else "credited to the account balance"
    )
    story: list[Any] = [
        _p(f"Credit note {note.number}", st["title"]),
        _p(
            f"Issued {_date(note.created_at)} · Corrects invoice {invoice.number} of {_date(invoice.finalized_at)}"
            f" (supply period {_date(invoice.period_start)} – {_date(invoice.period_end)})",
            st["text"],
        ),
        Spacer(1, 5 * mm),
        _parties(party_lines(invoice.seller), party_lines(invoice.buyer), st, "Credited to"),
        Spacer(1, 6 * mm),
    ]
    rows: list[list[Any]] = [["Corrected line", "Line", f"Amount ({currency})"]]
    for line in note.lines.select_related("invoice_line"):
        rows.append(
            [
                _p(line.description, st["text"]),
                str(line.invoice_line.position),
                money_display(-line.amount, currency, code=False),
            ]
        )
    totals_from = len(rows)
    rows.append(["", "Total credited", money_display(-note.total, currency, code=False)])
    story += [
        _amounts(rows, st, totals_from),
        Spacer(1, 5 * mm),
        _p(f"Reason: {note.reason}", st["text"]),
        _p(f"The {money_display(note.total, currency)} is {settled}.", st["small"]),
    ]
    return _build(story, f"Credit note {note.number}")


def _stored(content: bytes) -> dict[str, Any]:
    return {"content": content, "sha256": hashlib.sha256(content).hexdigest(), "rendered_at": timezone.now()}


def invoice_document_issue(invoice: Invoice) -> IssuedDocument:
    """At finalization, in its transaction: the PDF the invoice is, once."""
    return IssuedDocument.objects.create(invoice=invoice, **_stored(invoice_pdf(invoice)))


def credit_note_document_issue(note: CreditNote) -> IssuedDocument:
    return IssuedDocument.objects.create(credit_note=note, **_stored(credit_note_pdf(note)))


def documents_rerender_after_buyer_erasure(invoice: Invoice) -> int:
    """Once an erased tenant's retention has ended: its invoice's and credit notes' PDFs
    without the buyer (the one change their guard allows, in the caller's transaction that
    says so, billing.buyer_erasure). How many were replaced."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("documents are re-rendered in the buyer erasure's transaction")
    replaced = IssuedDocument.objects.filter(invoice=invoice).update(**_stored(invoice_pdf(invoice)))
    for note in invoice.credit_notes.all():
        replaced += IssuedDocument.objects.filter(credit_note=note).update(**_stored(credit_note_pdf(note)))
    return replaced


def issued_pdf(*, invoice: Invoice | None = None, credit_note: CreditNote | None = None) -> IssuedDocument:
    """The stored PDF; one issued before documents were kept is rendered now, once (a
    concurrent first fetch waits on the unique row and finds it)."""
    found = IssuedDocument.objects.filter(invoice=invoice, credit_note=credit_note).first()
    if found is not None:
        return found
    with transaction.atomic():
        if invoice is not None:
            Invoice.objects.select_for_update().get(pk=invoice.pk)
            found = IssuedDocument.objects.filter(invoice=invoice).first()
            return found or invoice_document_issue(invoice)
        assert credit_note is not None  # noqa: S101  (one of the two, by the signature's use)
        CreditNote.objects.select_for_update().get(pk=credit_note.pk)
        found = IssuedDocument.objects.filter(credit_note=credit_note).first()
        return found or credit_note_document_issue(credit_note)
