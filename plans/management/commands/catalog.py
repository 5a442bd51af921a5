"""python manage.py catalog import FILE | catalog export [--format yaml|json] [--output FILE]

Import validates the whole file first and writes nothing if any problem is
found (each is listed with its path); it is idempotent. Export writes the live
catalog in the same format, so export → import changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_project.audit import system_actor
from billing_project.errors import BillingError
from plans.catalog import CatalogError, catalog_document, dump_document, load_file
from plans.selectors import catalog_spec
from plans.services import catalog_import, catalog_validate


class Command(BaseCommand):
    help = "Import or export the catalog file (features, metrics, plans)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser("import", help="validate and apply a catalog file (YAML or JSON)")
        imp.add_argument("file")
        imp.add_argument("--check", action="store_true", help="validate only; write nothing")
        exp = sub.add_parser("export", help="write the live catalog")
        exp.add_argument("--format", choices=["yaml", "json"], default="yaml")
        exp.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            text = dump_document(catalog_document(catalog_spec()), options["format"])
            if options["output"]:
                Path(options["output"]).write_text(text, encoding="utf-8")
            else:
                self.stdout.write(text, ending="")
            return
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            spec = catalog_validate(load_file(path))
            if options["check"]:
                self.stdout.write(f"{path}: valid ({len(spec.plans)} plans)")
                return
            with system_actor():
                report = catalog_import(spec=spec)
        except CatalogError as exc:
            lines = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(f"{path}: {len(exc.problems)} problem(s), nothing imported:\n{lines}") from exc
        except BillingError as exc:
            raise CommandError(f"{path}: {exc.message}; nothing imported") from exc
        for line in report.lines():
            self.stdout.write(line)
