"""manage.py mcp_server — billing's tools for an AI assistant, over stdio (the Model Context
Protocol). It authenticates with an agent key, from BILLING_AGENT_KEY (or --key-file), and
every tool is that key's call of the REST API: read, explain, estimate, check and propose,
never a financial action. Point an MCP client (Claude Desktop, an agent framework, the SDK's
own client) at this command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agents.gateway import Gateway
from agents.tools import build_server


class Command(BaseCommand):
    help = "Serve billing's read, explain and propose tools over stdio (MCP), as an agent key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--key-file", default=None, help="a file holding the agent key (else BILLING_AGENT_KEY)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = Path(options["key_file"]).read_text() if options["key_file"] else os.environ.get("BILLING_AGENT_KEY", "")
        key = key.strip()
        if not key:
            raise CommandError("Give the agent key: BILLING_AGENT_KEY=bak_… (or --key-file).")
        if not key.startswith("bak_"):
            # a service key could do more than read and propose: the tools would not, but
            # the server is for agents and their keys only
            raise CommandError("The tool server runs with an agent key (bak_…), never a service key.")
        gateway = Gateway(key)
        # fail now, not at every tool call: the key must be one the API accepts, and the
        # service must answer (its database, Redis)
        checked = gateway.call("GET", "/api/v1/plans")
        if not checked.ok:
            error = checked.body.get("error", {}) if isinstance(checked.body, dict) else {}
            raise CommandError(
                f"The API refused this key or could not answer: {checked.status} "
                f"{error.get('code', '')}: {error.get('message', '')}".strip()
            )
        server = build_server(gateway)
        # stdout is the protocol's: nothing else may write there (logs go to stderr)
        sys.stdout.flush()
        server.run("stdio")
