"""The API's only parser: bounded JSON, numbers as Decimal."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


class BoundedJSONParser(JSONParser):
    """JSON bodies up to API_MAX_BODY_BYTES; numbers become Decimal, never float.

    DRF reads the stream itself, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE,
    so the size bound lives here (and in ApiBodyLimitMiddleware for bodies that
    declare their length).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body exceeds {limit} bytes.")
        if not raw.strip():
            return {}
        try:
            return loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}", code="malformed_json") from exc


def loads(raw: bytes) -> Any:
    """An API body as every endpoint reads it: numbers as Decimal, NaN and Infinity refused
    (ValueError)."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
