"""POST /api/v1/usage/events (API.md, Usage): one event or a batch of up to 1000."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import OpenApiExample, PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView
from billing_project.api_keys import ApiPrincipal
from billing_project.errors import PayloadTooLarge, invalid_field
from billing_project.scopes import USAGE_WRITE

from .ingestion import MAX_BATCH, Outcome, usage_record

EventIn = inline_serializer(
    "UsageEvent",
    {
        "tenant": serializers.CharField(),
        "metric": serializers.CharField(),
        "quantity": serializers.CharField(help_text='A decimal as a string ("1500") or a number.'),
        "idempotency_key": serializers.CharField(max_length=255),
        "occurred_at": serializers.DateTimeField(required=False, help_text="Defaults to the time received."),
        "properties": serializers.DictField(required=False),
        "correlation_id": serializers.CharField(required=False),
    },
)


class UsageEventsApi(BillingAPIView):
    required_scopes = {"POST": (USAGE_WRITE,)}

    @extend_schema(
        operation_id="usage_events_create",
        tags=["usage"],
        request=EventIn,
        responses={
            201: inline_serializer(
                "UsageAccepted", {"id": serializers.IntegerField(), "status": serializers.CharField()}
            ),
            # a batch's result, or one event sent again (a duplicate of the first)
            200: PolymorphicProxySerializer(
                component_name="UsageBatchResultOrDuplicate",
                resource_type_field_name=None,
                serializers=[
                    inline_serializer(
                        "UsageBatchResult",
                        {
                            "results": serializers.ListField(child=serializers.DictField()),
                            "accepted": serializers.IntegerField(),
                            "duplicates": serializers.IntegerField(),
                            "rejected": serializers.IntegerField(),
                        },
                    ),
                    inline_serializer(
                        "UsageDuplicate", {"id": serializers.IntegerField(), "status": serializers.CharField()}
                    ),
                ],
            ),
        },
        examples=[
            OpenApiExample(
                "one event",
                request_only=True,
                value={
                    "tenant": "acme",
                    "metric": "ai_tokens",
                    "quantity": "1500",
                    "idempotency_key": "req-7f3a",
                    "occurred_at": "2026-11-25T10:00:00Z",
                    "properties": {"model": "large"},
                    "correlation_id": "trace-abc",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        principal = cast(ApiPrincipal, request.auth)  # ApiKeyPermission admitted only principals
        data: Any = request.data
        if isinstance(data, dict) and "events" in data:
            return self._batch(principal, data["events"])
        (result,) = usage_record(principal=principal, events=[data])
        if result.error is not None:
            raise result.error  # rendered with the status of its kind (400, 403, 409)
        body: dict[str, Any] = {"id": result.id, "status": result.outcome.value}
        if result.late:
            body["late"] = True
        return Response(body, status=201 if result.outcome is Outcome.ACCEPTED else 200)

    def _batch(self, principal: ApiPrincipal, events: Any) -> Response:
        if not isinstance(events, list) or not events:
            raise invalid_field("events", "`events` is a non-empty list.")
        if len(events) > MAX_BATCH:
            raise PayloadTooLarge(
                f"At most {MAX_BATCH} events per batch.",
                code="batch_too_large",
                details={"limit": MAX_BATCH, "received": len(events)},
            )
        results = usage_record(principal=principal, events=events)
        counts = dict.fromkeys(Outcome, 0)
        for r in results:
            counts[r.outcome] += 1
        return Response(
            {
                "results": [r.as_dict() for r in results],
                "accepted": counts[Outcome.ACCEPTED],
                "duplicates": counts[Outcome.DUPLICATE],
                "rejected": counts[Outcome.REJECTED],
            }
        )
