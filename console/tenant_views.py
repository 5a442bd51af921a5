"""The tenant page (/admin/console/tenants/<id>/) and its money actions
(/admin/console/tenants/<id>/<action>/): thin admin views over console.tenant and
console.actions. Staff who may view tenants see the page; each action needs its own
permission (StaffAction's), and support and auditors are refused every one (403)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from billing_project.errors import BillingError
from billing_project.money import money_display
from entitlements.models import Grant
from invoicing.models import Invoice
from invoicing.refunds import refundable
from privacy.export import export_download
from subscriptions.models import Tenant

from .actions import ACTIONS, Target, error_text, initial, now, perform
from .tenant import tenant_picture

VIEW_PERMISSION = "subscriptions.view_tenant"
EXPORT_PERMISSION = "console.export_tenant_data"


def page_view(request: HttpRequest, tenant_id: int) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    tenant = get_object_or_404(Tenant, pk=tenant_id)
    context = {
        **admin.site.each_context(request),
        **tenant_picture(tenant=tenant, now=now(), see_money=request.user.has_perm("invoicing.view_invoice")),
        "title": f"{tenant.name} ({tenant.external_id})",
        # an erased tenant: nothing more is done for it (perform refuses too)
        "may": {code: request.user.has_perm(a.permission) and tenant.erased_at is None for code, a in ACTIONS.items()},
        # what the admin lets each group read: support reads invoices, not the credit ledger
        "see_money": request.user.has_perm("invoicing.view_invoice"),
        # the billing view (usage and cost to date): everyone who reads subscriptions, support too
        "see_billing_view": request.user.has_perm("subscriptions.view_subscription"),
        "see_credit": request.user.has_perm("invoicing.view_creditentry"),
        "may_export": request.user.has_perm(EXPORT_PERMISSION),
    }
    return TemplateResponse(request, "console/tenant.html", context)


def _id(request: HttpRequest, name: str) -> int:
    """The id the form acts on: the one the page was opened with (GET), else the posted one;
    anything but a whole number names nothing (404)."""
    value = request.GET.get(name) or request.POST.get(name) or ""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise Http404(f"No such {name} of this tenant.")
    return int(value)


def _target(request: HttpRequest, tenant: Tenant, needs: str) -> Target:
    if needs == "invoice":
        invoice = Invoice.objects.filter(tenant=tenant, pk=_id(request, "invoice")).first()
        if invoice is None:
            raise Http404("No such invoice of this tenant.")
        return Target(tenant, invoice=invoice)
    if needs == "grant":
        grant = Grant.objects.filter(tenant=tenant, pk=_id(request, "grant")).first()
        if grant is None:
            raise Http404("No such grant of this tenant.")
        return Target(tenant, grant=grant)
    return Target(tenant)


def _left_to_refund(invoice: Invoice | None) -> str:
    """What the form's invoice still has to refund, when it is a paid one (else nothing to say)."""
    if invoice is None or invoice.status != Invoice.Status.PAID:
        return ""
    return money_display(refundable(invoice=invoice), invoice.currency)


def act_view(request: HttpRequest, tenant_id: int, code: str) -> HttpResponse:
    action = ACTIONS.get(code)
    if action is None:
        raise Http404("No such action.")
    # the permission before anything else: whether a tenant or an invoice exists is not for everyone
    if not request.user.has_perm(action.permission):
        raise PermissionDenied
    tenant = get_object_or_404(Tenant, pk=tenant_id)
    target = _target(request, tenant, action.needs)
    page = reverse("console-tenant:page", args=[tenant.pk])
    if request.method == "POST":
        form = action.form(request.POST)
        if form.is_valid():
            try:
                done = perform(action=action, user=request.user, target=target, data=form.cleaned_data)  # type: ignore[arg-type]
            except BillingError as exc:
                form.add_error(None, error_text(exc))
            else:
                messages.success(request, done.message)
                return HttpResponseRedirect(page)
    else:
        form = action.form(initial=initial(action, target, now()))
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": f"{action.title}: {tenant.name}",
        "action": action,
        "form": form,
        "target": target,
        "tenant": tenant,
        "back": page,
        "invoice_total": money_display(target.invoice.total, target.invoice.currency) if target.invoice else "",
        "refundable": _left_to_refund(target.invoice),
    }
    return TemplateResponse(request, "console/tenant_action.html", context, status=400 if form.errors else 200)


def privacy_export_view(request: HttpRequest, tenant_id: int) -> StreamingHttpResponse:
    """The tenant's data export (GDPR access), the document the privacy API streams; the
    download is in the tenant's audit trail with who took it."""
    if not request.user.has_perm(EXPORT_PERMISSION):
        raise PermissionDenied
    tenant = get_object_or_404(Tenant, pk=tenant_id)
    return export_download(tenant, channel=f"console:{request.user.get_username()}", now=now())


page = admin.site.admin_view(page_view)
privacy_export = admin.site.admin_view(privacy_export_view)
act = admin.site.admin_view(act_view)
