"""Period-close scaling benchmark: the fan-out close of many tenants with 1, 2 and 4 workers.

    bench/close [--tenants 20000] [--workers 1,2,4] [--chunk 100] [--json FILE]

Prepares, once, a database of its own (`<name>_close_src`) holding `--tenants` tenants on
the demo catalog's Pro plan, each subscribed 75 days ago and rolled to today, so each has
its trial, a closed paid month and the open month's fee in advance to invoice. For each
worker count it copies that database (CREATE DATABASE … TEMPLATE), starts that many Celery
worker processes (prefork, concurrency 1) on a queue of their own, sends the beat task
`close_periods` once and waits until nothing is due. Throughput is invoices per second
from the send to the last invoice's creation; beside it, in the same run, raw PostgreSQL
committing single-row INSERT transactions on one connection (a close is a few dozen rows
in one transaction) and the scaling over one worker. Afterwards it checks that every
period is invoiced once and the series is gapless.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import connect_params  # noqa: E402

PREPARE = """
import os, sys, django
django.setup()
from datetime import timedelta
from django.utils import timezone
from pathlib import Path
from plans.catalog import load_file
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
first, last = int(sys.argv[1]), int(sys.argv[2])
if first == 0:
    catalog_import(spec=catalog_validate(load_file(Path('plans/fixtures/demo_catalog.yaml'))))
now = timezone.now()
for i in range(first, last):
    tenant = tenant_upsert(external_id=f'close-{i}', name=f'Close {i}', currency='USD')[0]
    sub = subscription_create(tenant=tenant, plan_code='pro', actor='bench', at=now - timedelta(days=75))
    subscription_roll(subscription_id=sub.pk, at=now - timedelta(minutes=90))
"""

CHECK = """
import json, django
django.setup()
from datetime import timedelta
from django.db.models import Count
from django.utils import timezone
from invoicing import selectors
from invoicing.models import Invoice
from subscriptions.models import BillingPeriod
now = timezone.now()
due = selectors.subscriptions_to_invoice(cutoff=now - timedelta(minutes=60), limit=10, now=now)
issued = Invoice.objects.exclude(number=None).values_list('number', flat=True)
numbers = sorted(int(n.rsplit('-', 1)[1]) for n in issued)
twice = BillingPeriod.objects.values('invoice').annotate(n=Count('id')).filter(invoice__isnull=False, n__gt=1).count()
print(json.dumps({'due': len(due), 'invoices': len(numbers), 'gapless': numbers == list(range(1, len(numbers) + 1)),
                  'periods_on_two_invoices': twice}))
"""


def url_for(name: str) -> str:
    params = connect_params()
    host = str(params.get("host", ""))
    if host.startswith("/"):
        return f"postgresql://{params['user']}@/{name}?host={host}"
    return f"postgresql://{params['user']}@{host}:{params.get('port', 5432)}/{name}"


def admin(sql: str) -> list[Any]:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **connect_params()) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def prepare(src: str, tenants: int, env: dict[str, str]) -> None:
    from django.conf import settings

    marker = ROOT / ".data" / f"{src}.{tenants}.ready"
    exists = admin(f"SELECT 1 FROM pg_database WHERE datname = '{src}'")
    if exists and marker.exists():
        return
    if exists:
        admin(f'DROP DATABASE "{src}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{src}"')
    child = {**env, "DATABASE_URL": url_for(src)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=child, check=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", PREPARE, "0", "1"], cwd=ROOT, env=child, check=True)
    # two processes: the machine's two cores
    half = (tenants + 1) // 2
    procs = [
        subprocess.Popen([sys.executable, "-c", PREPARE, str(a), str(b)], cwd=ROOT, env=child)
        for a, b in ((1, half), (half, tenants))
    ]
    if any(p.wait() for p in procs):
        raise RuntimeError("preparing the tenants failed")
    print(f"prepared {tenants:,} tenants in {time.monotonic() - started:.0f} s", flush=True)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(str(settings.DATABASES["default"]["NAME"]))


def raw_single_row_txns(url: str, rows: int = 3000) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE scratch (id bigserial PRIMARY KEY, tenant int, amount numeric(20, 6), at timestamptz)"
        )
        started = time.perf_counter()
        for i in range(rows):
            with conn.transaction():
                conn.execute("INSERT INTO scratch (tenant, amount, at) VALUES (%s, %s, now())", [i, "49.00"])
        return rows / (time.perf_counter() - started)


def run(src: str, workers: int, chunk: int, env: dict[str, str]) -> dict[str, Any]:
    import psycopg
    import redis as redis_lib

    name = f"{src}_run{workers}"
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{src}"')
    url = url_for(name)
    queue = f"billing-closebench-{workers}-{os.getpid()}"
    child = {
        **env,
        "DATABASE_URL": url,
        "REDIS_KEY_PREFIX": queue,
        "CELERY_QUEUE": queue,
        "INVOICE_CLOSE_CHUNK": str(chunk),
        "LOG_LEVEL": "WARNING",
    }
    log = (ROOT / ".data" / f"bench-close-workers-{workers}.log").open("w")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "worker",
                "-c",
                "1",
                "-P",
                "prefork",
                "-Q",
                queue,
                "-n",
                f"close{n}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=child,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for n in range(workers)
    ]
    try:
        time.sleep(6)  # the workers import Django and connect
        broker = redis_lib.Redis.from_url(env["REDIS_URL"])
        with psycopg.connect(url, autocommit=True) as conn:
            (before,) = conn.execute("SELECT count(*) FROM invoicing_invoice").fetchone() or (0,)
            sent = datetime.now(UTC)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import django; django.setup(); from billing_project.celery import app; "
                    f"app.send_task('invoicing.tasks.close_periods', queue='{queue}')",
                ],
                cwd=ROOT,
                env=child,
                check=True,
            )
            last, stable_since = -1, time.monotonic()
            while True:
                time.sleep(1)
                (count,) = conn.execute("SELECT count(*) FROM invoicing_invoice").fetchone() or (0,)
                busy = broker.llen(queue) > 0
                if count != last or busy:
                    last, stable_since = count, time.monotonic()
                elif time.monotonic() - stable_since > 8:
                    break
            first_at, last_at = conn.execute(
                "SELECT min(created_at), max(created_at) FROM invoicing_invoice"
            ).fetchone() or (None, None)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        log.close()
    check = json.loads(
        subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=child, check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    made = last - before
    seconds = (last_at - sent).total_seconds() if last_at else float("nan")
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "workers": workers,
        "invoices": made,
        "seconds": round(seconds, 1),
        "invoices_per_s": round(made / seconds, 1),
        **check,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the source database, run nothing")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    import django

    django.setup()
    from django.conf import settings

    env = {
        **os.environ,
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": settings.REDIS_URL,
        "STRIPE_COLLECTION_ENABLED": "false",
    }
    src = f"{settings.DATABASES['default']['NAME']}_close_src"
    print(f"source database {src}: {args.tenants:,} tenants…", flush=True)
    prepare(src, args.tenants, env)
    if args.prepare_only:
        return 0
    raw = raw_single_row_txns(url_for(src))
    print(f"raw PostgreSQL single-row INSERT transactions, 1 connection: {raw:,.0f}/s", flush=True)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "tenants": args.tenants,
        "chunk": args.chunk,
        "raw_txn_per_s": round(raw),
        "runs": [],
    }
    for workers in [int(w) for w in args.workers.split(",")]:
        result = run(src, workers, args.chunk, env)
        result["ratio_to_raw_txn"] = round(result["invoices_per_s"] / raw, 3)
        results["runs"].append(result)
        print(
            f"{workers} worker(s): {result['invoices']:,} invoices in {result['seconds']} s = "
            f"{result['invoices_per_s']:,}/s ({result['ratio_to_raw_txn']}× raw txn); "
            f"due after: {result['due']}, gapless: {result['gapless']}, periods on two invoices: "
            f"{result['periods_on_two_invoices']}",
            flush=True,
        )
    one = next((r["invoices_per_s"] for r in results["runs"] if r["workers"] == 1), None)
    for r in results["runs"]:
        r["scaling"] = round(r["invoices_per_s"] / one, 2) if one else None
        print(f"{r['workers']} worker(s): {r['invoices_per_s']:,}/s, {r['scaling']}× one worker", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
