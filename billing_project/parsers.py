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
        except UnacceptableText as exc:
            if exc.nul:  # valid JSON, but no text column or key can hold it: that field is wrong
                raise exceptions.ValidationError({exc.path or "body": f"{exc.reason}."}) from exc
            raise exceptions.ParseError(f"The body is not acceptable JSON: {exc}", code="malformed_json") from exc
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}", code="malformed_json") from exc


MAX_DEPTH = 32  # no API body nests deeper than a few levels; recursion over ~1,000 levels crashed


class UnacceptableText(ValueError):
    """Valid JSON that no endpoint can take: nested past MAX_DEPTH, or a string with a NUL
    (PostgreSQL's text cannot hold one) or a lone surrogate (not encodable as UTF-8: it
    would fail in the database, in a Redis key, in the error body that echoes it)."""

    def __init__(self, message: str, *, path: str = "", nul: bool = False) -> None:
        super().__init__(f"{message} (at {path})" if path else message)
        self.reason, self.path, self.nul = message, path, nul


def loads(raw: bytes) -> Any:
    """An API body as every endpoint reads it: UTF-8 only, numbers as Decimal, NaN and
    Infinity refused, and UnacceptableText for what no endpoint can take (all ValueError).

    UTF-8, and nothing else: json.loads(bytes) also reads UTF-16 and UTF-32, in which the
    escapes the screens below look for are spelled otherwise, and a NUL slipped past them."""
    text = raw.decode("utf-8")  # UnicodeDecodeError (a ValueError): malformed_json
    data = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    # Cheap screens first: without more brackets than MAX_DEPTH nothing can nest past it,
    # and without a \u escape no string can hold a NUL or a surrogate (raw, both are invalid).
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if deep or "\\u" in text:
        check_text(data)
    return data


def check_text(data: Any) -> None:
    """UnacceptableText for a structure nested past MAX_DEPTH or a string (key or value)
    with a NUL or a lone surrogate. Iterative: the structure may be as deep as the parser allowed."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, path)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise UnacceptableText(f"nested deeper than {MAX_DEPTH} levels", path=_shown(path[:3]) + "…")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for name, inner in items:
                step = (*path, str(name))
                if isinstance(name, str):
                    _check_string(name, step)
                stack.append((inner, depth + 1, step))


def _shown(path: tuple[str, ...]) -> str:
    """A field path that can be echoed: the offending characters escaped, long names cut."""
    text = ".".join(path).encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    return text if len(text) <= 120 else text[:120] + "…"


def _check_string(value: str, path: tuple[str, ...]) -> None:
    if "\x00" in value:
        raise UnacceptableText("NUL characters are not accepted", path=_shown(path), nul=True)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnacceptableText("a lone surrogate is not text", path=_shown(path)) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
