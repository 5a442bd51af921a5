"""Proposals: the one write an AI agent may make (API.md, "Proposals and explanations").

A proposal is an approval request made by an API key: checked at once by a dry run of the
service approval would run (refused now with that service's error code when it could never
be approved), then nothing happens until a member of `finance-approver` decides it in the
admin. Thin views over approvals.services; the key sees only its own proposals, a key bound
to a tenant only that tenant's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, RawField, Text
from billing_project.api_keys import ApiPrincipal
from billing_project.errors import BillingError, InvalidRequest, NotFound, PayloadTooLarge, invalid_field
from billing_project.models import ApiKey
from billing_project.money import exponent, format_decimal
from billing_project.scopes import PROPOSALS_WRITE
from subscriptions.models import Tenant
from subscriptions.services import tenant_get

from .kinds import kind_proposable
from .models import ApprovalRequest
from .services import approval_request

# a proposal is a sentence and a few fields: anything larger is not one
PAYLOAD_MAX_BYTES = 16 * 1024
REASON_MAX_CHARS = 2000


class ProposalIn(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.ChoiceField(choices=[k for k in ApprovalRequest.Kind.values if kind_proposable(k)])
    tenant = Text()
    payload = RawField()
    reason = Text(max_length=REASON_MAX_CHARS)
    idempotency_key = Text(max_length=255)


PROPOSAL = inline_serializer(
    "Proposal",
    {
        "id": serializers.IntegerField(),
        "status": serializers.ChoiceField(choices=ApprovalRequest.Status.values),
        "kind": serializers.CharField(),
        "tenant": serializers.CharField(),
        "payload": serializers.DictField(),
        "reason": serializers.CharField(),
        "description": serializers.CharField(help_text="What approving would do, as checked now."),
        "amount": serializers.CharField(allow_null=True),
        "currency": serializers.CharField(allow_null=True),
        "created_at": serializers.DateTimeField(),
        "expires_at": serializers.DateTimeField(),
        "decided_at": serializers.DateTimeField(allow_null=True),
        "decided_by": serializers.CharField(allow_null=True),
        "result": serializers.DictField(allow_null=True),
        "decision_reason": serializers.CharField(allow_null=True),
        "failure": serializers.CharField(allow_null=True),
    },
)


def proposal_document(request: ApprovalRequest, *, now: Any = None) -> dict[str, Any]:
    now = now or timezone.now()
    status = request.status
    if status == ApprovalRequest.Status.PENDING and request.expires_at <= now:
        status = ApprovalRequest.Status.EXPIRED  # beat writes it within the hour; the answer is already so
    return {
        "id": request.pk,
        "status": status,
        "kind": request.kind,
        "tenant": request.tenant.external_id,
        "payload": request.payload,
        "reason": request.reason,
        "description": request.description,
        "amount": format_decimal(request.amount, exponent(request.currency)) if request.amount is not None else None,
        "currency": request.currency or None,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "decided_at": request.decided_at,
        "decided_by": f"staff:{request.decided_by.get_username()}" if request.decided_by else None,
        "result": request.result or None,  # what approving did (the ledger entry, the refund…)
        "decision_reason": request.decision_reason or None,
        "failure": request.failure or None,
    }


def _principal(request: Request) -> ApiPrincipal:
    principal = request.auth
    if not isinstance(principal, ApiPrincipal):  # ApiKeyPermission admits only keys
        raise NotFound("Not found.", code="not_found")
    return principal


def _own(principal: ApiPrincipal) -> QuerySet[ApprovalRequest]:
    mine = ApprovalRequest.objects.filter(requested_by_key_id=principal.key_id).select_related("tenant", "decided_by")
    if principal.tenant is not None:
        mine = mine.filter(tenant__external_id=principal.tenant)
    return mine


def _hold_for(principal: ApiPrincipal) -> float | None:
    """Seconds until the key may propose again, or None: its proposals in the last hour
    against PROPOSALS_PER_KEY_PER_HOUR (a human reads each one, so a flood is refused
    before it fills the queue). Counted under the key's row lock (the caller's), so
    proposals sent in parallel cannot overshoot it."""
    now = timezone.now()
    recent = ApprovalRequest.objects.filter(
        requested_by_key_id=principal.key_id, created_at__gte=now - timedelta(hours=1)
    ).order_by("-created_at")
    limit = settings.PROPOSALS_PER_KEY_PER_HOUR
    times = list(recent.values_list("created_at", flat=True)[:limit])
    if len(times) < limit:
        return None
    return max((times[-1] + timedelta(hours=1) - now).total_seconds(), 1.0)


class ProposalsTooMany(exceptions.Throttled):
    """429 `rate_limited` with Retry-After: the hour's oldest proposal leaves the window then."""

    def __init__(self, wait: float):
        super().__init__(
            wait=wait,
            detail=f"At most {settings.PROPOSALS_PER_KEY_PER_HOUR} proposals an hour from one key: "
            "a person reads each.",
        )


class ProposalsApi(BillingAPIView):
    required_scopes = {"POST": (PROPOSALS_WRITE,), "GET": (PROPOSALS_WRITE,)}
    agent_methods = frozenset({"POST"})  # the one write an agent may make: it changes nothing by itself
    error_statuses = {429: "`rate_limited`: too many proposals from this key in the last hour."}

    @extend_schema(
        operation_id="proposals_create",
        tags=["proposals"],
        request=ProposalIn,
        responses={201: PROPOSAL, 200: PROPOSAL},
        description="Propose a credit, refund, credit note, plan change, grant or trial extension for a "
        "finance-approver to decide. Checked now by the service approval would run, writing nothing: a "
        "proposal that could never be approved is refused with that service's error code. The same "
        "idempotency_key again answers 200 with the first proposal.",
        examples=[
            OpenApiExample(
                "a credit",
                request_only=True,
                value={
                    "kind": "credit",
                    "tenant": "acme",
                    "payload": {"amount": "25.00", "currency": "USD"},
                    "reason": "The outage of 28 November cost them a day of API access.",
                    "idempotency_key": "agent-credit-acme-2026-11-28",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        principal = _principal(request)
        data = ProposalIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if len(json.dumps(fields["payload"], default=str).encode()) > PAYLOAD_MAX_BYTES:
            raise PayloadTooLarge(f"A proposal's payload is at most {PAYLOAD_MAX_BYTES} bytes.")
        if not isinstance(fields["payload"], dict):
            raise invalid_field("payload", "An object: the fields of the action proposed.")
        tenant = Tenant.objects.filter(external_id=fields["tenant"]).first()
        if tenant is None:  # named in the body: 400, as API.md wants for a body
            raise InvalidRequest(f"No tenant {fields['tenant']!r}.", code="unknown_tenant")
        with transaction.atomic():
            key = ApiKey.objects.select_for_update().get(pk=principal.key_id)  # one proposal at a time per key
            existing = _own(principal).filter(idempotency_key=fields["idempotency_key"]).exists()
            if not existing and (wait := _hold_for(principal)) is not None:
                raise ProposalsTooMany(wait)
            proposal = self._propose(fields, tenant, key)
        return Response(proposal_document(proposal), status=200 if existing else 201)

    @staticmethod
    def _propose(fields: dict[str, Any], tenant: Tenant, key: ApiKey) -> ApprovalRequest:
        try:
            return approval_request(
                kind=fields["kind"],
                tenant=tenant,
                payload=fields["payload"],
                reason=fields["reason"],
                requested_by_key=key,
                idempotency_key=fields["idempotency_key"],
            )
        except BillingError as exc:
            if exc.code == "idempotency_conflict" or exc.status_code in (403, 413, 429, 503):
                raise
            # a proposal that could never be approved: 400 with the service's own code (API.md)
            raise InvalidRequest(exc.message, code=exc.code, details=exc.details) from exc

    @extend_schema(
        operation_id="proposals_list",
        tags=["proposals"],
        parameters=[
            OpenApiParameter("tenant", str, description="Only this tenant's."),
            OpenApiParameter("status", str, enum=ApprovalRequest.Status.values),
        ],
        responses={200: inline_serializer("Proposals", {"proposals": serializers.ListField(child=PROPOSAL)})},
        description="This key's own proposals (a tenant-bound key: that tenant's only), newest first, at most 100.",
    )
    def get(self, request: Request) -> Response:
        principal = _principal(request)
        mine = _own(principal)
        tenant = request.query_params.get("tenant")
        if tenant is not None:
            mine = mine.filter(tenant=tenant_get(tenant))
        now = timezone.now()
        status = request.query_params.get("status")
        if status is not None:  # sent empty is not "any": it is no status at all
            if status not in ApprovalRequest.Status.values:
                raise invalid_field("status", f"One of {', '.join(ApprovalRequest.Status.values)}.")
            if status == ApprovalRequest.Status.PENDING:
                mine = mine.filter(status=status, expires_at__gt=now)
            elif status == ApprovalRequest.Status.EXPIRED:
                mine = mine.filter(status__in=("pending", "expired")).exclude(status="pending", expires_at__gt=now)
            else:
                mine = mine.filter(status=status)
        rows = mine.order_by("-created_at", "-pk")[:100]
        return Response({"proposals": [proposal_document(p, now=now) for p in rows]})


class ProposalApi(BillingAPIView):
    required_scopes = {"GET": (PROPOSALS_WRITE,)}

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        found = ApprovalRequest.objects.filter(pk=int(kwargs.get("proposal_id") or 0))
        return found.values_list("tenant__external_id", flat=True).first()

    @extend_schema(operation_id="proposal", tags=["proposals"], responses={200: PROPOSAL})
    def get(self, request: Request, proposal_id: int) -> Response:
        principal = _principal(request)
        proposal = _own(principal).filter(pk=proposal_id).first()
        if proposal is None:
            raise NotFound("Not found.", code="not_found")  # as the binding rule says it: nothing learnt
        return Response(proposal_document(proposal))
