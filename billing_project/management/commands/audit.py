"""manage.py audit verify|head|seal — the tamper-evident audit chain (billing_project/chain.py).

verify [--head POSITION:HASH ...]  walk the chain; exit 1 naming the first broken link
head                               seal what waits and print the newest link as JSON
                                   (keep it outside the database: see the README)
seal                               seal the links waiting (beat does it every minute)
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing_project.chain import chain_seal_all, chain_verify, last_sealed


def _head(value: str) -> tuple[int, str]:
    position, sep, digest = value.partition(":")
    if not sep or not position.isdigit() or len(digest) != 64:
        raise CommandError(f"--head wants POSITION:SHA256 (as `audit head` prints), not {value!r}")
    return int(position), digest.lower()


class Command(BaseCommand):
    help = "Verify, seal or print the head of the tamper-evident audit chain."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["verify", "head", "seal"])
        parser.add_argument(
            "--head", action="append", default=[], help="POSITION:HASH of a head kept outside the database"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "seal":
            self.stdout.write(f"sealed {chain_seal_all()} links")
        elif action == "head":
            chain_seal_all()
            position, link = last_sealed()
            self.stdout.write(json.dumps({"position": position, "link_hash": link}))
        else:
            verdict = chain_verify([_head(h) for h in options["head"]])
            summary = f"{verdict.links} links, {verdict.rows} chained rows, {verdict.unsealed} waiting to be sealed"
            if verdict.ok:
                self.stdout.write(f"audit chain intact: {summary}")
                return
            for message in verdict.broken[:20]:
                self.stderr.write(message)
            raise CommandError(f"audit chain broken, first at {verdict.broken[0]} ({summary})")
