#!/usr/bin/env python
"""Django's command-line utility.

When DATABASE_URL / REDIS_URL are unset, the embedded engines under .data/ are
started first (billing_project/embedded.py), so every command works on a fresh
machine with nothing but Python.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL") and os.environ.get("SECRET_KEY")):
        from billing_project.embedded import ensure_environment

        ensure_environment()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
