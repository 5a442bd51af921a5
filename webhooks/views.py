"""POST /webhooks/stripe/: Stripe's deliveries. Authenticated by signature alone (no API
key, no CSRF token); nothing is stored before the signature verifies, so forged or
replayed posts cannot pile up.

dj-stripe's intake view is deliberately not used: it stores every post before verifying
it and, under DEBUG, trusts an X-Djstripe-Webhook-Secret header.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing_project.api_errors import error_response
from billing_project.parsers import UnacceptableText, check_text
from invoicing.providers.stripe_signature import InvalidSignature, verify

from .services import InvalidEvent, stripe_event_record

logger = logging.getLogger(__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "Stripe webhooks are POSTed.")
    secret: str = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # 503, not 400: Stripe keeps retrying, so nothing is lost once the secret is set.
        logger.error("stripe.webhook.no_secret: STRIPE_WEBHOOK_SECRET is empty; refusing every webhook")
        return error_response(
            503, "webhook_not_configured", "Stripe webhooks are not configured here (no signing secret)."
        )
    limit: int = settings.STRIPE_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # Read at most one byte past the limit: a body without a declared length is bounded too.
    body = b"" if declared > limit else request.read(limit + 1)
    if declared > limit or len(body) > limit:
        return error_response(
            413, "request_too_large", f"The request body exceeds {limit} bytes.", {"limit_bytes": limit}
        )
    try:
        verify(body=body, header=request.headers.get("Stripe-Signature", ""), secret=secret)
    except InvalidSignature as exc:
        logger.warning("stripe.webhook.invalid_signature", extra={"reason": str(exc)})
        return error_response(400, "invalid_signature", f"The Stripe-Signature does not verify: {exc}")
    try:
        event = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)  # UTF-8 only, as Stripe sends
        check_text(event)  # a NUL or a lone surrogate could not be stored (jsonb, text): refused, not a 500
    except UnacceptableText as exc:
        logger.error("stripe.webhook.unacceptable_text", extra={"reason": str(exc)})
        if exc.nul:  # JSON, but no Stripe event carries a NUL
            return error_response(400, "invalid_event", f"The body is not a Stripe event: {exc}")
        return error_response(400, "malformed_json", f"The body is not acceptable JSON: {exc}")
    except (ValueError, RecursionError):
        return error_response(400, "malformed_json", "The body is not JSON.")
    try:
        recorded = stripe_event_record(event=event)
    except InvalidEvent as exc:
        return error_response(400, "invalid_event", f"The body is not a Stripe event: {exc}")
    # 200 for a duplicate too: Stripe retries until it sees a 2xx.
    return JsonResponse(
        {"received": True, "event": recorded.stripe_id, "status": "accepted" if recorded.created else "duplicate"}
    )
