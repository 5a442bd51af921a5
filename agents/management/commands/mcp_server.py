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
        server = build_server(Gateway(key))
        # stdout is the protocol's: nothing else may write there (logs go to stderr)
        sys.stdout.flush()
        server.run("stdio")
