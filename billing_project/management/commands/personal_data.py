"""manage.py personal_data check|rekey — personal data encrypted at rest (billing_project/personal_data.py).

check   exit 1 when a stored value is not under PERSONAL_DATA_KEY (it is read by a fallback),
        naming each column and how many; a value no key reads is an error
rekey   rewrite every value not under PERSONAL_DATA_KEY under it, in batches (safe to run
        again, and while the service runs); then the fallbacks can go
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing_project.personal_data import PersonalDataUnreadable, columns_rewrite, encrypted_columns, token_rekey


class Command(BaseCommand):
    help = "Check or rotate the key personal data is encrypted under at rest."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["check", "rekey"])
        parser.add_argument("--batch", type=int, default=500, help="rows per transaction (rekey)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._act(options)
        except PersonalDataUnreadable as error:
            raise CommandError(str(error)) from None

    def _act(self, options: dict[str, Any]) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch is a number of rows, 1 or more")
        columns = encrypted_columns()
        if options["action"] == "rekey":
            rewritten = columns_rewrite(columns, token_rekey, batch=options["batch"])
            self.stdout.write(f"rekeyed {rewritten} values under PERSONAL_DATA_KEY")
            return
        stale = {
            f"{table}.{column}": n
            for table, column, kind, personal in columns
            if (n := columns_rewrite([(table, column, kind, personal)], token_rekey, write=False))
        }
        if stale:
            listed = ", ".join(f"{where}: {n}" for where, n in stale.items())
            raise CommandError(f"values under an older key (run `personal_data rekey`): {listed}")
        self.stdout.write(f"personal data under PERSONAL_DATA_KEY: {len(columns)} columns checked")
