"""The approval queue: what is asked, by whom, why, and what approving would do. Read-only
but for the two decisions, admin actions that ask for a reason and call the services."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.text import Truncator

from billing_project.admin_base import ReadOnlyAdmin
from billing_project.errors import BillingError

from .kinds import money_text
from .models import ApprovalRequest
from .services import APPROVE_PERMISSION, approval_approve, approval_reject


class DecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, help_text="Why you decide so (audited, shown to the requester).")


def _json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status_code",
        "kind",
        "tenant_id_shown",
        "amount_shown",
        "requester",
        "reason_short",
        "description_short",
        "created_at",
        "expires_at",
    ]
    list_display_links = ["id"]
    list_filter = ["status", "kind"]
    search_fields = ["tenant__external_id", "reason", "description", "requested_by__username"]
    list_select_related = ["tenant", "requested_by", "requested_by_key", "decided_by"]
    date_hierarchy = "created_at"
    actions = ["approve", "reject"]
    SHOWN: tuple[str, ...] = (
        "status",
        "kind",
        "tenant_id_shown",
        "amount_shown",
        "description",
        "payload_shown",
        "preview_shown",
        "reason",
        "requester",
        "idempotency_key",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "decision_reason",
        "result_shown",
        "failure",
    )
    fields = SHOWN
    readonly_fields = SHOWN

    @admin.display(description="reason")
    def reason_short(self, obj: ApprovalRequest) -> str:
        return Truncator(obj.reason).chars(90)  # whole on the request's page

    @admin.display(description="what approving would do")
    def description_short(self, obj: ApprovalRequest) -> str:
        return Truncator(obj.description).chars(120)

    @admin.display(description="status", ordering="status")
    def status_code(self, obj: ApprovalRequest) -> str:
        # the short word in the list (the filter and the page spell out what each means)
        return obj.status

    @admin.display(description="tenant", ordering="tenant__external_id")
    def tenant_id_shown(self, obj: ApprovalRequest) -> str:
        return obj.tenant.external_id

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, obj: ApprovalRequest) -> str:
        return money_text(obj.amount, obj.currency) if obj.amount is not None else "—"

    @admin.display(description="requested by")
    def requester(self, obj: ApprovalRequest) -> str:
        if obj.requested_by_key is not None:
            return f"agent key {obj.requested_by_key}"
        return obj.requester_label

    @admin.display(description="payload")
    def payload_shown(self, obj: ApprovalRequest) -> str:
        return _json(obj.payload)

    @admin.display(description="preview")
    def preview_shown(self, obj: ApprovalRequest) -> str:
        return _json(obj.preview)

    @admin.display(description="result")
    def result_shown(self, obj: ApprovalRequest) -> str:
        return _json(obj.result)

    change_form_template = "admin/approvals/approval_request_change_form.html"

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # Approve and Reject on the request's own page too, for an approver and a pending request
        # (the same actions as the queue's: a reason first, then the services decide)
        obj = kwargs.get("obj")
        context["decide"] = (
            obj is not None and obj.status == ApprovalRequest.Status.PENDING and self.has_approve_permission(request)
        )
        context["action_checkbox_name"] = ACTION_CHECKBOX_NAME
        return super().render_change_form(request, context, *args, **kwargs)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[ApprovalRequest], *, approve: bool
    ) -> HttpResponse | None:
        verb = "approve" if approve else "reject"
        if "apply" in request.POST:
            form = DecisionForm(request.POST)
            if form.is_valid():
                decide = approval_approve if approve else approval_reject
                approver = cast(User, request.user)  # staff pages: a logged-in user
                for pk in queryset.order_by("pk").values_list("pk", flat=True):
                    try:
                        done = decide(request_id=pk, approver=approver, reason=form.cleaned_data["reason"])
                    except BillingError as exc:
                        self.message_user(request, f"#{pk} not {verb}d: {exc.message}", messages.ERROR)
                        continue
                    if done.status == ApprovalRequest.Status.FAILED:
                        self.message_user(request, f"#{pk} failed when checked again: {done.failure}", messages.ERROR)
                    elif done.status == ApprovalRequest.Status.EXPIRED:
                        self.message_user(request, f"#{pk} had expired: nothing done.", messages.WARNING)
                    else:
                        self.message_user(request, f"#{pk} {done.status}: {done.description}", messages.SUCCESS)
                return None
        else:
            form = DecisionForm()
        return TemplateResponse(
            request,
            "admin/action_with_reason.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "objects": queryset,
                "opts": self.model._meta,
                "title": f"{verb.capitalize()} requests",
                "warning": (
                    "Approving checks each request again and runs it: the money moves now."
                    if approve
                    else "Rejected requests do nothing; a refund they recorded is canceled."
                ),
                "action": verb,
                "submit": verb.capitalize(),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description="Approve and execute selected requests", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected requests", permissions=["approve"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)
