"""Logs as production writes them: a handler with the settings' own JSON formatter and the
context filter (request id, principal), writing to a string the test reads."""

from __future__ import annotations

import importlib
import io
import logging
from typing import Any

from django.conf import settings


def json_log_handler() -> tuple[logging.Handler, io.StringIO]:
    from billing_project.observability import ContextFilter

    logging_config: dict[str, Any] = settings.LOGGING
    spec: dict[str, Any] = dict(logging_config["formatters"]["json"])
    factory = spec.pop("()")
    module, _, name = factory.rpartition(".")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(getattr(importlib.import_module(module), name)(**spec))
    handler.addFilter(ContextFilter())
    return handler, stream
