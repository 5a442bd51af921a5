"""Four eyes: requests, decisions and expiry. Every write of approvals is here.

- `needs_approval`: whether a staff member's credit, refund or credit note waits for a
  second person (above the currency's APPROVAL_THRESHOLDS; a currency not listed: always).
  Callers (the console's forms) ask, then either run the service or `approval_request`.
  An agent's proposal always goes through `approval_request`, whatever the amount.
- `approval_request`: checked now by a dry run of the very service approval will run
  (approvals/kinds.py), so a request that could never be approved is refused now with the
  service's own error; pending until APPROVAL_EXPIRY_DAYS; idempotent per requester key.
- `approval_approve` / `approval_reject`: by a member of finance-approver (the permission
  approvals.approve_approvalrequest) who is not the requester. Approving runs the kind's
  service under the request's row lock, so two approvers racing execute it once; the
  service checks everything again (the invoice still paid, the amount still refundable),
  and a refusal marks the request `failed` with the reason, with nothing executed.
- `approvals_expire_due`: the hourly beat job.

Lock order: the approval request first, then whatever the kind's service locks (an
invoice, then its tenant, then the subscription: subscriptions/locks.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from auditlog.context import auditlog_value
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_project.audit import audit_context
from billing_project.errors import BillingError, Conflict, Forbidden, InvalidRequest, NotFound, invalid_field
from billing_project.models import ApiKey
from billing_project.money import Money, format_decimal, normalize_currency
from subscriptions.locks import tenant_select_for_update
from subscriptions.models import Tenant

from .kinds import Actor, kind_for
from .models import ApprovalRequest
from .thresholds import parse_thresholds

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "approvals.approve_approvalrequest"
S = ApprovalRequest.Status


def needs_approval(*, amount: Money) -> bool:
    """Whether a staff member's credit, refund or credit note of `amount` needs a second
    person: above its currency's threshold (equal to it does not); always for a currency
    APPROVAL_THRESHOLDS does not list."""
    limit = parse_thresholds(settings.APPROVAL_THRESHOLDS).get(normalize_currency(amount.currency))
    return limit is None or amount.amount > limit


def staff_label(user: User) -> str:
    return f"staff:{user.get_username()}"


def key_label(key: ApiKey) -> str:
    return f"{key.kind}:{key.prefix}"


@contextlib.contextmanager
def _audited(user: User | None, extra: dict[str, Any]) -> Iterator[None]:
    """Audit entries made inside name `user` (a staff member, or none for a key) and carry
    `extra` (who asked, who decided). The request's address, if a staff page set one, stays."""
    outer = auditlog_value.get({})
    kept = {k: outer[k] for k in ("remote_addr", "remote_port") if k in outer}
    with audit_context({**kept, "actor": user, "additional_data": extra}):
        yield


# ---------------------------------------------------------------- requests
def _same(requested_by: User | None, key: ApiKey | None, token: str) -> ApprovalRequest | None:
    found = ApprovalRequest.objects.filter(idempotency_key=token)
    if key is not None:
        return found.filter(requested_by_key=key).first()
    return found.filter(requested_by=requested_by).first()


def _replayed(existing: ApprovalRequest, *, kind: str, tenant: Tenant, payload: Any, reason: str) -> ApprovalRequest:
    sent = (kind, tenant.pk, payload, reason)
    # what the requester sent, without what the dry run settled for them (a plan change's "when")
    stored = existing.payload
    if isinstance(payload, dict) and isinstance(stored, dict):
        stored = {k: v for k, v in stored.items() if k in payload or k not in kind_for(kind).settled}
    if (existing.kind, existing.tenant_id, stored, existing.reason) != sent:
        raise Conflict(
            f"Idempotency key {existing.idempotency_key!r} was used for another request (#{existing.pk}).",
            code="idempotency_conflict",
            details={"approval_request": existing.pk},
        )
    return existing


def approval_request(
    *,
    kind: str,
    tenant: Tenant,
    payload: Any,
    reason: str,
    requested_by: User | None = None,
    requested_by_key: ApiKey | None = None,
    idempotency_key: str = "",
    now: datetime | None = None,
) -> ApprovalRequest:
    """Ask for `kind` on `tenant` (approvals/kinds.py has each payload's shape), by a staff
    member or an agent's key (exactly one). Checked at once by a dry run of the service
    approval will run: refused now, with that service's error code, if it could not be
    approved. Pending until now + APPROVAL_EXPIRY_DAYS. The same `idempotency_key` from the
    same requester returns the same request; with another kind, tenant, payload or reason it
    is Conflict `idempotency_conflict`. Whether the requester may ask for this at all is the
    caller's to check (the console's forms: the action's own permission; the API: the
    `proposals:write` scope). A staff member's refund is recorded now, awaiting approval."""
    now = now or timezone.now()
    handler = kind_for(kind)
    if (requested_by is None) == (requested_by_key is None):
        raise InvalidRequest("A request is made by a staff member or by an API key: exactly one.")
    if requested_by is not None and not requested_by.is_active:
        raise Forbidden("An inactive user cannot request anything.", code="requester_inactive")
    if requested_by_key is not None and not requested_by_key.is_active:
        raise Forbidden("A revoked key cannot propose anything.", code="requester_inactive")
    if requested_by_key is not None and not handler.proposable:
        raise invalid_field("kind", f"{kind} is asked for by staff, never proposed by an agent.")
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise invalid_field("reason", "Say why (the approver reads it).")
    if not isinstance(idempotency_key, str) or len(idempotency_key) > 255:
        raise invalid_field("idempotency_key", "At most 255 characters.")
    cleaned = handler.clean(tenant, payload)
    requester = staff_label(requested_by) if requested_by is not None else key_label(requested_by_key)  # type: ignore[arg-type]
    extra: dict[str, Any] = {"actor": requester, "requested_by": requester}
    if requested_by_key is not None:
        extra["api_key_id"] = requested_by_key.pk
    with transaction.atomic(), _audited(requested_by, extra):
        # The tenant's lock first, as every service that changes a tenant's money takes it:
        # requests for one tenant are made one at a time, so a duplicate waits here and then
        # finds the first. Taken only inside the dry run, racers that had passed it could
        # hold the row's key-share (the request's foreign key) while another waited for its
        # update lock: a deadlock under load.
        locked = tenant_select_for_update(tenant_id=tenant.pk)
        if idempotency_key and (existing := _same(requested_by, requested_by_key, idempotency_key)) is not None:
            return _replayed(existing, kind=kind, tenant=tenant, payload=cleaned, reason=reason)
        if locked.erased_at is not None:
            raise Conflict(
                f"{tenant.external_id}'s personal data was erased: nothing more is done for it.", code="tenant_erased"
            )
        handler.check_new(locked, reason)
        plan = handler.validate(tenant, cleaned)  # rolled back: nothing written
        cleaned = handler.settle(cleaned, plan)
        try:
            with transaction.atomic():  # a savepoint: a racing duplicate is found, not an error
                request = ApprovalRequest.objects.create(
                    kind=kind,
                    tenant=tenant,
                    payload=cleaned,
                    amount=plan.amount.amount if plan.amount else None,
                    currency=plan.amount.currency if plan.amount else "",
                    description=plan.description,
                    preview=plan.details,
                    reason=reason,
                    requested_by=requested_by,
                    requested_by_key=requested_by_key,
                    idempotency_key=idempotency_key,
                    created_at=now,
                    expires_at=now + timedelta(days=settings.APPROVAL_EXPIRY_DAYS),
                )
                if requested_by is not None:
                    actor = Actor(label=requester, reason=reason, request_id=request.pk)
                    prepared = handler.on_request(tenant=tenant, payload=cleaned, actor=actor)
                    if prepared:
                        request.result = prepared
                        request.save(update_fields=["result"])
        except IntegrityError:
            if not idempotency_key or (existing := _same(requested_by, requested_by_key, idempotency_key)) is None:
                raise
            return _replayed(existing, kind=kind, tenant=tenant, payload=cleaned, reason=reason)
    logger.info(
        "approvals.requested",
        extra={"approval_request": request.pk, "kind": kind, "tenant_id": tenant.pk, "requested_by": requester},
    )
    return request


# ---------------------------------------------------------------- decisions
def _may_decide(approver: User) -> None:
    if not (approver.is_active and getattr(approver, "is_staff", False) and approver.has_perm(APPROVE_PERMISSION)):
        raise Forbidden(
            f"{staff_label(approver)} may not approve or reject requests (finance-approver does).",
            code="approval_not_permitted",
        )


def _locked(request_id: int, approver: User) -> ApprovalRequest:
    """The request's row, locked (two approvers: the second waits, then finds it decided),
    decided by someone else than its requester, and still pending."""
    request = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None:
        raise NotFound(f"No approval request {request_id}.", code="unknown_approval_request")
    if request.requested_by_id is not None and request.requested_by_id == approver.pk:
        raise Forbidden(
            "Four eyes: the person who asked cannot decide; another approver must.", code="approver_is_requester"
        )
    if request.status != S.PENDING:
        raise Conflict(
            f"Approval request #{request.pk} is {request.status} already.",
            code="approval_not_pending",
            details={"status": request.status},
        )
    return request


def _decision_reason(reason: str) -> str:
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise invalid_field("reason", "Say why (kept in the audit trail).")
    return reason


def _close(request: ApprovalRequest, *, status: str, now: datetime, note: str, strict: bool) -> None:
    """Rejected or expired: undo what the request prepared (a refund awaiting approval is
    canceled), then record the status. `strict`: a refusal to undo is raised (a rejection
    stays pending); else it is kept in `failure` and the request closes anyway (expiry must
    not retry for ever)."""
    try:
        with transaction.atomic():
            kind_for(request.kind).on_close(prepared=request.result, reason=note)
    except BillingError as exc:
        if strict:
            raise
        request.failure = f"{exc.code}: {exc.message}"
        logger.warning("approvals.close_refused", extra={"approval_request": request.pk, "error": request.failure})
    request.status, request.decided_at = status, now


def approval_approve(*, request_id: int, approver: User, reason: str, now: datetime | None = None) -> ApprovalRequest:
    """Approve and execute a pending request. Returns it approved (with `result`), failed
    (the service refused when checked again, or the amount it would move is no longer the
    one requested: `failure` says why, nothing was executed) or expired (it was past its
    time). Forbidden `approval_not_permitted` without the approver permission, Forbidden
    `approver_is_requester` for the requester, Conflict `approval_not_pending` once decided."""
    now = now or timezone.now()
    reason = _decision_reason(reason)
    _may_decide(approver)
    with transaction.atomic():
        request = _locked(request_id, approver)
        requester, by = request.requester_label, staff_label(approver)
        with _audited(approver, {"actor": f"{by} approving {requester}", "requested_by": requester, "approved_by": by}):
            if request.expires_at <= now:
                _close(request, status=S.EXPIRED, now=now, note="approval request expired", strict=False)
                request.save()
                return request
            handler = kind_for(request.kind)
            actor = Actor(
                label=f"{by} approving {requester}",
                reason=f"{request.reason} (approved by {by}: {reason})",
                user=approver,
                request_id=request.pk,
            )
            try:
                with transaction.atomic():  # a refusal rolls back whatever the service began
                    if request.tenant.erased_at is not None:
                        raise Conflict(f"{request.tenant.external_id} is erased.", code="tenant_erased")
                    outcome = handler.run(request.tenant, request.payload, actor, request.result)
                    moved = outcome.plan.amount
                    if (moved.amount if moved else None, moved.currency if moved else "") != (
                        request.amount,
                        request.currency,
                    ):
                        raise Conflict(
                            f"Approving would now move {moved or 'nothing'}, not the "
                            f"{format_decimal(request.amount or Decimal(0))} {request.currency} requested.",
                            code="approval_amount_changed",
                        )
            except BillingError as exc:
                request.status, request.failure = S.FAILED, f"{exc.code}: {exc.message}"
                _close(request, status=S.FAILED, now=now, note=f"approval failed: {exc.message}", strict=False)
            else:
                request.status, request.result = S.APPROVED, {**request.result, **outcome.result}
            request.decided_by, request.decided_at, request.decision_reason = approver, now, reason
            request.save()
    logger.info(
        "approvals.decided",
        extra={"approval_request": request.pk, "status": request.status, "approver": by, "failure": request.failure},
    )
    return request


def approval_reject(*, request_id: int, approver: User, reason: str, now: datetime | None = None) -> ApprovalRequest:
    """Reject a pending request: nothing is done (a refund it recorded is canceled). The
    same rules as approving: the approver permission, not the requester, still pending."""
    now = now or timezone.now()
    reason = _decision_reason(reason)
    _may_decide(approver)
    with transaction.atomic():
        request = _locked(request_id, approver)
        requester, by = request.requester_label, staff_label(approver)
        with _audited(approver, {"actor": f"{by} rejecting {requester}", "requested_by": requester, "rejected_by": by}):
            _close(request, status=S.REJECTED, now=now, note=f"rejected by {by}: {reason}", strict=True)
            request.decided_by, request.decision_reason = approver, reason
            request.save()
    logger.info("approvals.decided", extra={"approval_request": request.pk, "status": request.status, "approver": by})
    return request


# ---------------------------------------------------------------- expiry
@transaction.atomic
def approval_expire(*, request_id: int, now: datetime) -> bool:
    """Expire one request if, under its row lock, it is still pending and past its time."""
    request = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None or request.status != S.PENDING or request.expires_at > now:
        return False
    _close(request, status=S.EXPIRED, now=now, note="approval request expired", strict=False)
    request.save()
    return True


def approvals_expire_due(*, now: datetime, limit: int = 1000) -> int:
    """The beat job: expire every pending request past its time, each in its own transaction
    (one being approved right now is waited for, then found decided). Returns how many."""
    due = list(
        ApprovalRequest.objects.filter(status=S.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(approval_expire(request_id=pk, now=now) for pk in due)
