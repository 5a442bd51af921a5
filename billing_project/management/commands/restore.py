"""manage.py restore FILE --target URL [--verify] — restore a dump made by `backup` into an
empty database (created when missing), then, with --verify, check it against its manifest
and every invariant of the books; exit 1 naming what differs or is broken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing_project.backup import BackupError, restore


class Command(BaseCommand):
    help = "Restore a backup into an empty database and verify it against its manifest and the invariants."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the .dump written by `manage.py backup` (its manifest beside it)")
        parser.add_argument("--target", required=True, help="libpq URL of an empty database (created if missing)")
        parser.add_argument("--verify", action="store_true", help="check the manifest and every invariant")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            verdict = restore(Path(options["file"]), options["target"], verify=options["verify"])
        except BackupError as error:
            raise CommandError(str(error)) from None
        if not options["verify"]:
            self.stdout.write(f"restored into {verdict.restored_into} (not verified)")
            return
        if verdict.ok:
            self.stdout.write(f"restored into {verdict.restored_into}: manifest matches, every invariant holds")
            return
        for key, difference in verdict.mismatches.items():
            self.stderr.write(f"differs from the manifest: {key}: {json.dumps(difference)[:2000]}")
        for name, rows in verdict.broken.items():
            self.stderr.write(f"broken: {name}: {json.dumps(rows)[:2000]}")
        raise CommandError(f"restored into {verdict.restored_into}, but it does not verify")
