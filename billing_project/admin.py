"""Admin for platform records: API keys (secret shown once, revoke), task failures, and
background work items (blocked ones retried by staff)."""

from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .admin_base import ReadOnlyAdmin
from .api_keys import CreatedKey, api_key_create, api_key_revoke, api_key_update_limits
from .audit import api_actor_of
from .models import ApiKey, ChainHead, ChainLink, TaskFailure, WorkItem
from .scopes import ALL_SCOPES
from .services import task_failure_resolve
from .work import work_retry


class ApiKeyCreateForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s} — {d}") for s, d in ALL_SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Agent keys may only hold entitlements:read, billing:read and proposals:write.",
    )
    metrics = forms.CharField(required=False, help_text="Comma-separated metric codes this key may report usage for.")

    class Meta:
        model = ApiKey
        fields = ["name", "kind", "scopes", "metrics", "tenant", "rate_limit_per_minute"]

    def clean_metrics(self) -> list[str]:
        raw: str = self.cleaned_data.get("metrics") or ""
        return [m.strip() for m in raw.split(",") if m.strip()]


class RevokeForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, help_text="Why the key is revoked (audited).")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "prefix", "kind", "tenant", "scope_list", "status", "last_used_at", "created_at"]
    list_filter = ["kind", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant"]
    actions = ["revoke_keys"]
    readonly_fields = [
        "kind",
        "prefix",
        "scopes",
        "metrics",
        "tenant",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_reason",
    ]
    fields = ["name", "rate_limit_per_minute", *readonly_fields]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else "revoked"

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the audit trail keeps its subject

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
            kwargs["fields"] = ApiKeyCreateForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return ApiKeyCreateForm.Meta.fields if obj is None else self.fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            api_key_update_limits(key=obj, name=obj.name, rate_limit_per_minute=obj.rate_limit_per_minute)
            return
        # The form already ran the model's validation (known scopes, no write
        # scope on an agent key), so errors showed on the form.
        data = form.cleaned_data
        created = api_key_create(
            name=data["name"],
            kind=data["kind"],
            scopes=data["scopes"],
            metrics=data["metrics"],
            tenant=data.get("tenant"),
            rate_limit_per_minute=data.get("rate_limit_per_minute"),
        )
        obj.pk = created.key.pk
        request._created_api_key = created  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        created: CreatedKey | None = getattr(request, "_created_api_key", None)
        if created is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered directly (no redirect, no message storage): the secret is
        # in this one response and nowhere else.
        response = TemplateResponse(
            request,
            "admin/billing_project/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "created": created,
                "opts": self.model._meta,
                "title": "API key created",
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])  # superusers: keys are theirs
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = RevokeForm(request.POST)
            if form.is_valid():
                for key in queryset:
                    api_key_revoke(key=key, reason=form.cleaned_data["reason"])
                self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
                return None
        else:
            form = RevokeForm()
        return TemplateResponse(
            request,
            "admin/action_with_reason.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "objects": queryset,
                "opts": self.model._meta,
                "title": "Revoke API keys",
                "warning": "These keys stop working at once. Revocation cannot be undone.",
                "action": "revoke_keys",
                "submit": "Revoke",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(TaskFailure)
class TaskFailureAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["task_name", "task_id", "exception_type", "failed_at", "resolved_at"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter), "task_name"]
    search_fields = ["task_name", "task_id", "message"]
    readonly_fields = [
        "task_name",
        "task_id",
        "args",
        "kwargs",
        "exception_type",
        "message",
        "traceback",
        "failed_at",
        "resolved_at",
    ]
    fields = [*readonly_fields, "resolution_note"]
    actions = ["mark_resolved"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TaskFailure | None = None) -> bool:
        return False

    @admin.action(description="Mark resolved", permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[TaskFailure]) -> None:
        for failure in queryset:
            task_failure_resolve(failure=failure, note=failure.resolution_note)


class RetryForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea, help_text="What was fixed, so that it can succeed now (audited).")


@admin.register(WorkItem)
class WorkItemAdmin(ReadOnlyAdmin):
    """Background work that failed: what, how often, when next, and why it is blocked.
    Read-only but for the retry action, which calls work_retry."""

    list_display = ["subject", "job", "state", "attempts", "next_attempt_at", "blocked_reason", "last_failed_at"]
    list_filter = ["state", "job"]
    search_fields = ["subject", "job", "blocked_reason", "last_error"]
    actions = ["retry"]

    @admin.action(description="Retry (after fixing the cause)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WorkItem]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = RetryForm(request.POST)
            if form.is_valid():
                retried = [work_retry(item_id=item.pk, note=form.cleaned_data["note"]) for item in queryset]
                done = sum(item.state == WorkItem.State.DONE for item in retried)
                self.message_user(request, f"Retrying {len(retried) - done} item(s).", messages.SUCCESS)
                if done:
                    self.message_user(request, f"Skipped {done} item(s) that succeeded since.", messages.WARNING)
                return None
        else:
            form = RetryForm()
        return TemplateResponse(
            request,
            "admin/action_with_reason.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "objects": queryset,
                "opts": self.model._meta,
                "title": "Retry background work",
                "warning": "Each item is tried again at once, with a fresh count of attempts.",
                "action": "retry",
                "submit": "Retry",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing_project.retry_workitem")


# The audit log: django-auditlog's own page, with the API key as the actor of changes
# made through the API (billing_project.audit.api_actor); "system" only where no one is named.
admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class BillingLogEntryAdmin(LogEntryAdmin):  # type: ignore[misc]
    @admin.display(description="Actor")
    def user_url(self, obj: LogEntry) -> str:
        if obj.actor is None and (key := api_actor_of(obj)) is not None:
            return f"API key {key}"
        return str(super().user_url(obj))


# ---------------------------------------------------------------- the audit chain (auditors read it)
@admin.register(ChainHead)
class ChainHeadAdmin(ReadOnlyAdmin):
    """The heads the daily job recorded: what `audit verify --head` checks against (copies kept
    outside the database are the proof; README, Privacy and compliance)."""

    list_display = ["position", "link_hash", "recorded_at"]
    ordering = ["-position"]


@admin.register(ChainLink)
class ChainLinkAdmin(ReadOnlyAdmin):
    """Every link of the chain: which row of which table, its content hash, and once sealed
    its position and the hashes that tie it to the one before."""

    list_display = ["position", "table_name", "row_id", "event", "content_hash", "link_hash", "created_at"]
    list_filter = ["table_name", "event"]
    search_fields = ["=row_id", "=content_hash", "=link_hash"]
    ordering = ["-id"]
    show_full_result_count = False  # the chain grows for ever: no COUNT(*) per page
