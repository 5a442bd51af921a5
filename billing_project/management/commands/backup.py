"""manage.py backup [--output DIR] — a PostgreSQL dump (custom format) and its manifest, of
one snapshot (billing_project/backup.py; README, Operations: Backup and restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_project.backup import BackupError, backup_write


class Command(BaseCommand):
    help = "Write a dump of the database and a manifest of its books, from one snapshot."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--output", default=str(Path(settings.BASE_DIR) / ".data" / "backups"), help="directory for both files"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            made = backup_write(Path(options["output"]))
        except BackupError as error:
            raise CommandError(str(error)) from None
        counts = made.data["row_counts"]
        self.stdout.write(
            f"dump     {made.dump} ({made.data['dump']['bytes']} bytes, sha256 {made.data['dump']['sha256'][:16]}…)\n"
            f"manifest {made.manifest} ({len(counts)} tables, {sum(counts.values())} rows)"
        )
