"""The tool server's only way into billing: the REST API itself, called in-process through
the same WSGI application gunicorn serves, with the agent's own key. Authorisation, scopes,
tenant binding, rate limits, validation and error codes are therefore the API's, not a
second rule set; a tool can do exactly what its key may do over HTTP, and an agent key may
never do more than read and propose (billing_project.api_auth)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the API's JSON: a document, or {"error": {"code", "message", "details"}}

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _host() -> str:
    """A host the deployment accepts (ALLOWED_HOSTS), so Django's host check passes as over HTTP."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return str(host)
        if host.startswith(".") and len(host) > 1:
            return str(host[1:])
    return "localhost"


class Gateway:
    def __init__(self, api_key: str, application: Wsgi | None = None):
        if application is None:
            from billing_project.wsgi import application as served  # the very app gunicorn serves

            application = served
        self._app = application
        self._key = api_key

    def call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None) -> Answer:
        data = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": urlencode({k: v for k, v in (query or {}).items() if v is not None}),
            "SERVER_NAME": _host(),
            "SERVER_PORT": "443",
            "HTTP_HOST": _host(),
            "HTTPS": "on",  # as behind the TLS proxy: no redirect to https
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_AUTHORIZATION": f"Bearer {self._key}",
            "HTTP_ACCEPT": "application/json",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "HTTP_X_FORWARDED_PROTO": "https",
            "wsgi.input": io.BytesIO(data),
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "https",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            status.append(line)

        chunks = self._app(environ, start_response)
        try:
            raw = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        code = int(status[0].split(" ", 1)[0]) if status else 500
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:  # never pass the page on (a debug page holds settings and code)
            parsed = {
                "error": {"code": "not_json", "message": f"HTTP {code}: the service answered no JSON.", "details": {}}
            }
        return Answer(code, parsed)
