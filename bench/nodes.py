"""Two web nodes and two workers on one PostgreSQL (through PgBouncer in transaction mode)
and one Redis, under mixed load; afterwards, nothing lost and nothing billed twice.

    bench/nodes [--seconds 180] [--tenants 300] [--pool 10]

On a database of its own (`<name>_nodes`, made afresh each run) it prepares `--tenants`
tenants with periods to close, starts Debian's pgbouncer (transaction mode, `--pool`
server connections) in front of PostgreSQL, two gunicorn nodes (2 sync workers each,
DATABASE_POOLER=transaction), two Celery workers and beat, all through PgBouncer. Clients
then send, for `--seconds`, alternating between the nodes: single usage events (each tenth
sent again to the other node, as a retry after a lost answer would be), batches of 200,
and entitlement checks, while the period close is sent every 30 s. Then it waits for the
workers to finish and checks, on PostgreSQL directly:
- every event the API accepted is stored exactly once, and none it did not accept;
- the hourly rollups add up to the events (aggregation by two workers);
- no billing period is on two invoices, nothing is left due, every series is gapless, and
  every invariant `restore --verify` checks holds (invoices equal their lines, ledger);
- no request was answered 5xx.
It prints throughput and p50/p99 per kind of request and, as the baseline measured in the
same run, the same four client processes against two nodes of a bare Django view
(bench/bare.py, gunicorn with the same workers) for `--bare-seconds`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import connect_params, free_port  # noqa: E402

PREPARE = """
import json, sys, django
django.setup()
from datetime import timedelta
from pathlib import Path
from django.utils import timezone
from billing_project.api_keys import api_key_create
from plans.catalog import load_file
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
now = timezone.now()
catalog_import(spec=catalog_validate(load_file(Path('plans/fixtures/demo_catalog.yaml'))))
for i in range(int(sys.argv[1])):
    tenant = tenant_upsert(external_id=f'node-{i}', name=f'Node {i}', currency='USD')[0]
    sub = subscription_create(tenant=tenant, plan_code='pro', actor='bench', at=now - timedelta(days=75))
    subscription_roll(subscription_id=sub.pk, at=now - timedelta(minutes=90))
key = api_key_create(name='nodes', kind='service', scopes=['usage:write', 'entitlements:read'],
                     metrics=['api_calls', 'ai_tokens'])
print(json.dumps({'secret': key.secret}))
"""

CHECK = """
import json, sys, django
django.setup()
from datetime import timedelta
import psycopg
from django.db.models import Count, Sum
from django.utils import timezone
from billing_project.backup import broken_invariants, conninfo
from invoicing import selectors
from subscriptions.models import BillingPeriod
from usage.models import UsageEvent, UsageRollup
accepted = set(json.load(open(sys.argv[1])))
stored = list(UsageEvent.objects.values_list('idempotency_key', flat=True))
now = timezone.now()
due = selectors.subscriptions_to_invoice(cutoff=now - timedelta(minutes=60), limit=10, now=now)
twice = BillingPeriod.objects.values('invoice').annotate(n=Count('id')).filter(invoice__isnull=False, n__gt=1).count()
events_sum = UsageEvent.objects.aggregate(s=Sum('quantity'))['s'] or 0
rollup_sum = UsageRollup.objects.aggregate(s=Sum('sum'))['s'] or 0
with psycopg.connect(conninfo()) as conn, conn.cursor() as cursor:
    broken = broken_invariants(cursor)
print(json.dumps({
    'accepted': len(accepted), 'stored': len(stored), 'stored_distinct': len(set(stored)),
    'lost': len(accepted - set(stored)), 'not_accepted_but_stored': len(set(stored) - accepted),
    'due_after': len(due), 'periods_on_two_invoices': twice,
    'events_sum': str(events_sum), 'rollup_sum': str(rollup_sum), 'broken_invariants': sorted(broken),
    'invoices': __import__('invoicing.models', fromlist=['Invoice']).Invoice.objects.count(),
}))
"""


def params() -> dict[str, Any]:
    from django.conf import settings

    found = connect_params()
    return {
        "host": found.get("host") or "127.0.0.1",
        "port": int(found.get("port") or 5432),
        "user": found["user"],
        "name": f"{settings.DATABASES['default']['NAME']}_nodes",
    }


def admin(sql: str) -> None:
    import psycopg

    p = params()
    with psycopg.connect(dbname="postgres", host=p["host"], port=p["port"], user=p["user"], autocommit=True) as c:
        c.execute(sql)


def start_bouncer(pool: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    p = params()
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    folder.chmod(0o777)  # run as nobody when we are root (pgbouncer refuses root)
    (folder / "users.txt").write_text(f'"{p["user"]}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={p['host']} port={p['port']}\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = {pool}\nmax_client_conn = 500\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    as_root = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([binary, "-q", *as_root, str(folder / "pgbouncer.ini")])
    deadline = time.monotonic() + 15
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pgbouncer did not start: {(folder / 'pgbouncer.log').read_text()}")
        time.sleep(0.1)
    return proc, port, folder


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("w")
    )


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"node on {port} did not come up")


# ------------------------------------------------------------------ clients
def _event(tenant: int, key: str, now: float) -> dict[str, Any]:
    return {
        "tenant": f"node-{tenant}",
        "metric": "api_calls",
        "quantity": "1",
        "idempotency_key": key,
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
    }


def client(args: tuple[str, list[int], str, int, int, float]) -> dict[str, Any]:
    kind, ports, secret, number, tenants, seconds = args
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=60) for p in ports]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    accepted: list[str] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        node = i % len(conns)
        if kind == "single":
            key = f"s{number}-{i}"
            sends = [(node, _event(i % tenants, key, time.time()))]
            if i % 10 == 0:  # a retry after a lost answer, to the other node
                sends.append(((node + 1) % len(conns), sends[0][1]))
            path = "/api/v1/usage/events"
        elif kind == "batch":
            events = [_event((i * 200 + j) % tenants, f"b{number}-{i}-{j}", time.time()) for j in range(200)]
            sends, path = [(node, {"events": events})], "/api/v1/usage/events"
        elif kind == "check":
            sends = [(node, {"tenant": f"node-{i % tenants}", "feature": "api_access"})]
            path = "/api/v1/entitlements/check"
        else:
            sends, path = [(node, {})], "/bare"
        for to, body in sends:
            started = time.perf_counter()
            try:
                if kind == "bare":
                    conns[to].request("GET", path)
                else:
                    conns[to].request("POST", path, body=json.dumps(body), headers=headers)
                response = conns[to].getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                statuses[-1] += 1
                conns[to] = http.client.HTTPConnection("127.0.0.1", ports[to], timeout=60)
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
            if kind == "single" and response.status in (200, 201):
                accepted.append(body["idempotency_key"])
            elif kind == "batch" and response.status == 200:
                answer = json.loads(data)
                stored = {r["index"] for r in answer["results"] if r["status"] in ("accepted", "duplicate")}
                accepted.extend(e["idempotency_key"] for n, e in enumerate(body["events"]) if n in stored)
    return {"kind": kind, "statuses": dict(statuses), "latencies": latencies, "accepted": accepted}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")


def load(ports: list[int], secret: str, tenants: int, seconds: float, env: dict[str, str]) -> list[dict[str, Any]]:
    jobs = [("single", ports, secret, n, tenants, seconds) for n in range(2)]
    jobs += [("batch", ports, secret, 0, tenants, seconds), ("check", ports, secret, 0, tenants, seconds)]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        pending = pool.map_async(client, jobs)
        started = time.monotonic()
        while not pending.ready():  # the period close, every 30 s, as beat would more slowly
            send_close(env)
            pending.wait(timeout=max(0.0, 30 - (time.monotonic() - started) % 30))
        return list(pending.get())


def send_close(env: dict[str, str]) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from billing_project.celery import app; "
            "from django.conf import settings; "
            "app.send_task('invoicing.tasks.close_periods', queue=settings.CELERY_TASK_DEFAULT_QUEUE); "
            "app.send_task('usage.tasks.aggregate_usage', queue=settings.CELERY_TASK_DEFAULT_QUEUE)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )


def bare_load(env: dict[str, str], seconds: float, logs: Path) -> float:
    """Requests/s of the four clients against two bare-view nodes: the same-run baseline."""
    ports = [free_port(), free_port()]
    bare_env = {**env, "DJANGO_SETTINGS_MODULE": "bench.bare"}
    procs = [
        spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "bench.bare:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            bare_env,
            logs / f"bare-{n}.log",
        )
        for n, port in enumerate(ports)
    ]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/bare")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
        with mp.get_context("spawn").Pool(4) as pool:
            results = pool.map(client, [("bare", ports, "", n, 1, seconds) for n in range(4)])
        return sum(len(r["latencies"]) for r in results) / seconds
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def summary(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("single", "batch", "check"):
        mine = [r for r in results if r["kind"] == kind]
        latencies = [x for r in mine for x in r["latencies"]]
        statuses: Counter[int] = Counter()
        for r in mine:
            statuses.update({int(k): v for k, v in r["statuses"].items()})
        out[kind] = {
            "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(pct(latencies, 0.5), 2),
            "p99_ms": round(pct(latencies, 0.99), 2),
            "statuses": dict(sorted(statuses.items())),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--bare-seconds", type=float, default=15)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    import django

    django.setup()
    from django.conf import settings

    p = params()
    if str(p["host"]).startswith("/"):
        raise SystemExit("bench/nodes needs PostgreSQL on TCP (DATABASE_URL=postgresql://…@127.0.0.1:5432/…)")
    admin(f'DROP DATABASE IF EXISTS "{p["name"]}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{p["name"]}"')
    direct = f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['name']}"
    prefix = f"billing-nodes-{os.getpid()}"
    base = {
        **os.environ,
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": settings.REDIS_URL,
        "STRIPE_COLLECTION_ENABLED": "false",
        "API_DEFAULT_RATE_PER_MINUTE": "100000000",
        "REDIS_KEY_PREFIX": prefix,
        "CELERY_QUEUE": prefix,
        "INVOICE_CLOSE_CHUNK": "25",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**base, "DATABASE_URL": direct},
        check=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", PREPARE, str(args.tenants)],
        cwd=ROOT,
        env={**base, "DATABASE_URL": direct},
        check=True,
        capture_output=True,
        text=True,
    )
    secret = json.loads(out.stdout.strip().splitlines()[-1])["secret"]
    bouncer, bport, folder = start_bouncer(args.pool)
    pooled = {
        **base,
        "DATABASE_URL": f"postgresql://{p['user']}@127.0.0.1:{bport}/{p['name']}",
        "DATABASE_POOLER": "transaction",
    }
    logs = ROOT / ".data" / "bench-nodes"
    logs.mkdir(parents=True, exist_ok=True)
    bare = bare_load(base, args.bare_seconds, logs)
    print(f"baseline: 4 clients, 2 bare-view nodes: {bare:,.0f} requests/s", flush=True)
    ports = [free_port(), free_port()]
    procs = [
        spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "billing_project.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            pooled,
            logs / f"web-{n}.log",
        )
        for n, port in enumerate(ports)
    ]
    procs += [
        spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "worker",
                "-c",
                "1",
                "-Q",
                prefix,
                "-n",
                f"node{n}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            pooled,
            logs / f"worker-{n}.log",
        )
        for n in range(2)
    ]
    procs.append(
        spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "beat",
                "-l",
                "WARNING",
                "-S",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
            pooled,
            logs / "beat.log",
        )
    )
    try:
        for port in ports:
            wait_healthy(port)
        print(
            f"2 nodes on {ports}, 2 workers, beat, PgBouncer :{bport} (pool {args.pool}); "
            f"{args.tenants} tenants; load for {args.seconds:.0f} s…",
            flush=True,
        )
        started = time.monotonic()
        results = load(ports, secret, args.tenants, args.seconds, pooled)
        elapsed = time.monotonic() - started
        print("load done; letting the workers finish…", flush=True)
        import redis as redis_lib

        broker = redis_lib.Redis.from_url(settings.REDIS_URL)
        for _ in range(3):  # a close and an aggregation after the last event, then an idle queue
            send_close(pooled)
            time.sleep(5)
            while broker.llen(prefix) > 0:
                time.sleep(1)
            time.sleep(10)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        bouncer.terminate()
        bouncer.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    accepted_file = logs / "accepted.json"
    accepted_file.write_text(json.dumps(sorted({k for r in results for k in r["accepted"]})))
    check = json.loads(
        subprocess.run(
            [sys.executable, "-c", CHECK, str(accepted_file)],
            cwd=ROOT,
            env={**base, "DATABASE_URL": direct},
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    found = {
        "seconds": round(elapsed),
        "tenants": args.tenants,
        "pool": args.pool,
        **summary(results, elapsed),
        "books": check,
        "bare_requests_per_s": round(bare, 1),
    }
    total = sum(found[kind]["requests_per_s"] for kind in ("single", "batch", "check"))
    found["ratio_to_bare"] = round(total / bare, 3)
    print(f"all requests {total:,.1f}/s = {found['ratio_to_bare']}× the bare view's {bare:,.0f}/s (same clients)")
    for kind in ("single", "batch", "check"):
        k = found[kind]
        print(f"{kind:>6}: {k['requests_per_s']:>8,}/s  p50 {k['p50_ms']} ms  p99 {k['p99_ms']} ms  {k['statuses']}")
    print(json.dumps(check, indent=2))
    fivexx = sum(v for kind in ("single", "batch", "check") for s, v in found[kind]["statuses"].items() if s >= 500)
    ok = (
        check["lost"] == 0
        and check["not_accepted_but_stored"] == 0
        and check["stored"] == check["stored_distinct"]
        and check["periods_on_two_invoices"] == 0
        and check["due_after"] == 0
        and not check["broken_invariants"]
        and check["events_sum"] == check["rollup_sum"]
        and fivexx == 0
    )
    found["ok"] = ok
    print("nothing lost, nothing billed twice" if ok else "CHECK FAILED", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
