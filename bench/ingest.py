"""Usage ingestion benchmark: the batch API and single events beside raw PostgreSQL, in one run.

    bench/ingest [--seconds 20] [--clients 4] [--workers 2] [--agg-sizes 1000000,10000000]

Starts the service (gunicorn, sync workers) on its own database (`<name>_bench`), loads it
from several client processes over loopback, then measures PostgreSQL itself inserting
the same rows (multi-row INSERT … ON CONFLICT, and COPY) and prints each API figure as a
ratio of those baselines. Finally times aggregation of 1M and 10M events into rollups.
Everything runs on this machine; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------ setup
def bench_database_url() -> str:
    import psycopg
    from django.conf import settings

    base = settings.DATABASES["default"]
    name = f"{base['NAME']}_bench"
    params = {
        k: v
        for k, v in {
            "host": base.get("HOST") or base.get("OPTIONS", {}).get("host"),
            "port": base.get("PORT") or None,
            "user": base["USER"],
            "password": base.get("PASSWORD") or None,
        }.items()
        if v
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    host = params.get("host", "")
    if str(host).startswith("/"):
        return f"postgresql://{base['USER']}@/{name}?host={host}"
    return f"postgresql://{base['USER']}@{host}:{params.get('port', 5432)}/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(env: dict[str, str]) -> dict[str, Any]:
    """Migrate the bench database and create the tenants, catalog and key the load uses."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = """
import json, django
django.setup()
from plans.catalog import load_file
from plans.services import catalog_import, catalog_validate
from subscriptions.selectors import live_subscription
from subscriptions.services import subscription_create, tenant_upsert
from billing_project.api_keys import api_key_create
from pathlib import Path
catalog_import(spec=catalog_validate(load_file(Path('plans/fixtures/demo_catalog.yaml'))))
for i in range(10):
    tenant = tenant_upsert(external_id=f'bench-{i}', name=f'Bench {i}', currency='USD')[0]
    if live_subscription(tenant) is None:  # usage outside every billing period is refused
        subscription_create(tenant=tenant, plan_code='team', actor='bench')
key = api_key_create(name='bench', kind='service', scopes=['usage:write'], metrics=['ai_tokens', 'api_calls'])
print(json.dumps({'secret': key.secret, 'key_id': key.key.pk}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_web(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "billing_project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**env, "LOG_LEVEL": "WARNING"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _ = request(port, "GET", "/healthz", None, {})
            if status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not come up")


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if own:
        conn.close()
    return response.status, data


# ------------------------------------------------------------------ load
def event(i: int, tag: str) -> dict[str, Any]:
    return {
        "tenant": f"bench-{i % 10}",
        "metric": "ai_tokens",
        "quantity": str(100 + i % 900),
        "idempotency_key": f"{tag}-{i}",
        # now (the bench's tenants were subscribed just before): a fixed date would fall out of
        # their billing periods and be refused (no_billing_period) as the calendar moves on
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "properties": {"model": "large"},
    }


def batch_client(args: tuple[int, str, str, int, float]) -> tuple[int, int, list[float]]:
    port, secret, tag, batch_size, seconds = args
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    # bodies are built before the clock starts: the client should cost as little as possible
    bodies = [
        json.dumps({"events": [event(b * batch_size + i, tag) for i in range(batch_size)]}).encode() for b in range(400)
    ]
    accepted = sent = 0
    latencies = []
    deadline = time.monotonic() + seconds
    for body in bodies:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        status, data = request(port, "POST", "/api/v1/usage/events", body, headers, conn)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"batch failed: {status} {data[:300]!r}")
        accepted += json.loads(data)["accepted"]
        sent += batch_size
    return accepted, sent, latencies


def single_client(args: tuple[int, str, str, float]) -> tuple[int, list[float]]:
    port, secret, tag, seconds = args
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    bodies = [json.dumps(event(i, tag)).encode() for i in range(100_000)]
    latencies = []
    deadline = time.monotonic() + seconds
    for body in bodies:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        status, data = request(port, "POST", "/api/v1/usage/events", body, headers, conn)
        latencies.append(time.perf_counter() - started)
        if status != 201:
            raise RuntimeError(f"single event failed: {status} {data[:300]!r}")
    return len(latencies), latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------ raw PostgreSQL baselines
def raw_rows(n: int, tenant_ids: list[int], metric_id: int, key_id: int, tag: str) -> list[tuple[Any, ...]]:
    return [
        (
            tenant_ids[i % len(tenant_ids)],
            metric_id,
            100 + i % 900,
            '{"model": "large"}',
            datetime(2026, 11, 25, 10, tzinfo=UTC),
            key_id,
            f"{tag}-{i}",
            "h" * 64,
            "",
        )
        for i in range(n)
    ]


def bench_tenant_ids(conn: Any) -> list[int]:
    return [
        r[0] for r in conn.execute("SELECT id FROM subscriptions_tenant WHERE external_id LIKE 'bench-%%' ORDER BY id")
    ]


def raw_baselines(url: str, key_id: int, n: int, batch_size: int) -> dict[str, float]:
    import psycopg

    results: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        tenant_ids = bench_tenant_ids(conn)
        (metric_id,) = conn.execute("SELECT id FROM plans_billablemetric WHERE code = 'ai_tokens'").fetchone()
        # A scratch copy of the events table as one plain table (not partitioned): the same
        # columns, indexes and constraints, with the idempotency key's unique index on the
        # table itself, where the service keeps it in usage_usageeventkey. No rows kept.
        conn.execute("DROP TABLE IF EXISTS bench_usage_event")
        conn.execute("CREATE TABLE bench_usage_event (LIKE usage_usageevent INCLUDING ALL)")
        conn.execute(
            "CREATE UNIQUE INDEX bench_usage_event_key ON bench_usage_event (tenant_id, idempotency_key)"
            " WHERE origin = 'reported'"
        )
        conn.commit()
        cols = (
            "tenant_id, metric_id, quantity, properties, occurred_at, reported_by_id, idempotency_key, "
            "payload_hash, correlation_id"
        )
        # 1. one multi-row INSERT … ON CONFLICT per batch (the statement the API runs), commit per batch
        rows = raw_rows(n, tenant_ids, metric_id, key_id, uuid.uuid4().hex)
        started = time.perf_counter()
        for b in range(0, n, batch_size):
            chunk = rows[b : b + batch_size]
            conn.execute(
                f"INSERT INTO bench_usage_event ({cols}, received_at, late) "
                "SELECT t, m, q, p::jsonb, o, r, k, h, c, now(), false FROM unnest("
                "%s::bigint[], %s::bigint[], %s::numeric[], %s::text[], %s::timestamptz[], %s::bigint[], "
                "%s::text[], %s::text[], %s::text[]) AS x(t, m, q, p, o, r, k, h, c) "
                "ON CONFLICT (tenant_id, idempotency_key) WHERE origin = 'reported' DO NOTHING",
                [list(col) for col in zip(*chunk, strict=True)],
            )
            conn.commit()
        results["raw_multirow_on_conflict_ev_s"] = n / (time.perf_counter() - started)
        # 2. COPY of the same shape of rows, one transaction
        rows = raw_rows(n, tenant_ids, metric_id, key_id, uuid.uuid4().hex)
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY bench_usage_event ({cols}, received_at, late) FROM STDIN") as cp:
            for row in rows:
                cp.write_row((*row, datetime.now(UTC), False))
        conn.commit()
        results["raw_copy_ev_s"] = n / (time.perf_counter() - started)
        # 3. the fastest idempotent form: COPY into a temporary table, then one INSERT … ON CONFLICT
        rows = raw_rows(n, tenant_ids, metric_id, key_id, uuid.uuid4().hex)
        conn.execute(
            f"CREATE TEMP TABLE bench_stage ON COMMIT DELETE ROWS AS SELECT {cols}, received_at, late "
            "FROM bench_usage_event WITH NO DATA"
        )
        conn.commit()
        started = time.perf_counter()
        for b in range(0, n, batch_size):
            with conn.cursor() as cur, cur.copy(f"COPY bench_stage ({cols}, received_at, late) FROM STDIN") as cp:
                for row in rows[b : b + batch_size]:
                    cp.write_row((*row, datetime.now(UTC), False))
            conn.execute(
                f"INSERT INTO bench_usage_event ({cols}, received_at, late) SELECT {cols}, received_at, late "
                "FROM bench_stage ON CONFLICT (tenant_id, idempotency_key) WHERE origin = 'reported' DO NOTHING"
            )
            conn.commit()
        results["raw_copy_stage_on_conflict_ev_s"] = n / (time.perf_counter() - started)
        # 4. single-row INSERT … ON CONFLICT, one transaction each (the single-event baseline)
        rows = raw_rows(3000, tenant_ids, metric_id, key_id, uuid.uuid4().hex)
        latencies = []
        for row in rows:
            started = time.perf_counter()
            conn.execute(
                f"INSERT INTO bench_usage_event ({cols}, received_at, late) VALUES (%s, %s, %s, %s::jsonb, %s, %s, "
                "%s, %s, %s, now(), false) "
                "ON CONFLICT (tenant_id, idempotency_key) WHERE origin = 'reported' DO NOTHING",
                row,
            )
            conn.commit()
            latencies.append(time.perf_counter() - started)
        results["raw_single_ev_s"] = len(latencies) / sum(latencies)
        results["raw_single_p50_ms"] = pct(latencies, 0.50) * 1000
        results["raw_single_p99_ms"] = pct(latencies, 0.99) * 1000
        conn.execute("DROP TABLE bench_usage_event")
        conn.commit()
    return results


# ------------------------------------------------------------------ aggregation
def aggregation(env: dict[str, str], url: str, key_id: int, sizes: list[int]) -> dict[str, float]:
    import psycopg

    results: dict[str, float] = {}
    loaded = 0
    with psycopg.connect(url) as conn:
        tenant_ids = bench_tenant_ids(conn)
        metrics = [r[0] for r in conn.execute("SELECT id FROM plans_billablemetric ORDER BY id")]
        # Start from empty rollups; events already there (from the API load) count too.
        conn.execute("TRUNCATE usage_usagerollup, usage_usageuniquevalue, usage_aggregationwatermark")
        conn.commit()
        (loaded,) = conn.execute("SELECT count(*) FROM usage_usageevent").fetchone()
        print(f"  {loaded:,} events already stored; topping up to each size", flush=True)
        received = datetime(2020, 1, 1, tzinfo=UTC)
        conn.execute("SELECT billing_usage_partition_create('2026-01-01T00:00:00Z')")  # the month copied below
        conn.commit()
        for size in sizes:
            tag = uuid.uuid4().hex[:8]
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY usage_usageevent (tenant_id, metric_id, quantity, properties, occurred_at, received_at, "
                    "reported_by_id, idempotency_key, payload_hash, correlation_id, late) FROM STDIN"
                ) as cp,
            ):
                for i in range(max(0, size - loaded)):
                    occurred = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=(i * 7919) % (30 * 86400))
                    cp.write_row(
                        (
                            tenant_ids[i % len(tenant_ids)],
                            metrics[i % len(metrics)],
                            1 + i % 100,
                            f'{{"user_ref": "u{i % 500}", "model": "m"}}',
                            occurred,
                            received + timedelta(microseconds=i),
                            key_id,
                            f"agg-{tag}-{i}",
                            "h",
                            "",
                            False,
                        )
                    )
            conn.commit()
            loaded = max(loaded, size)
            # Rollups from nothing, with the watermark placed so that exactly the newest
            # `size` events are pending (events are append-only: older runs' rows stay).
            conn.execute("TRUNCATE usage_usagerollup, usage_usageuniquevalue, usage_aggregationwatermark")
            conn.execute(
                "INSERT INTO usage_aggregationwatermark (name, received_up_to, runs, events_aggregated, updated_at)"
                " SELECT 'usage', received_at, 0, 0, now() FROM usage_usageevent"
                " ORDER BY received_at DESC OFFSET %s LIMIT 1",
                [size],
            )
            conn.commit()
            script = (
                "import django, time; django.setup(); from usage.aggregation import usage_aggregate_all;"
                "t = time.perf_counter(); n = usage_aggregate_all(limit=5_000_000, max_runs=1000);"
                "print(n, time.perf_counter() - t)"
            )
            out = subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            events, seconds = out.stdout.split()[-2:]
            results[f"aggregate_{size}_s"] = float(seconds)
            results[f"aggregate_{size}_ev_s"] = int(events) / float(seconds)
            print(f"  aggregated {int(events):,} events in {float(seconds):.1f} s", flush=True)
    return results


def api_load(env: dict[str, str], setup: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    port = free_port()
    web = start_web(env, port, args.workers)
    try:
        print(
            f"batch API: {args.clients} clients × {args.batch_size}-event batches for {args.seconds:.0f} s…", flush=True
        )
        tag = uuid.uuid4().hex[:8]
        with mp.Pool(args.clients) as pool:
            started = time.perf_counter()
            parts = pool.map(
                batch_client,
                [(port, setup["secret"], f"{tag}-{c}", args.batch_size, args.seconds) for c in range(args.clients)],
            )
            elapsed = time.perf_counter() - started
        batch_latencies = [x for p in parts for x in p[2]]
        results["api_batch_ev_s"] = sum(p[0] for p in parts) / elapsed
        results["api_batch_p50_ms"] = pct(batch_latencies, 0.5) * 1000
        results["api_batch_p99_ms"] = pct(batch_latencies, 0.99) * 1000
        print("single events: 1 client (latency), then the same clients (throughput)…", flush=True)
        _, lat = single_client((port, setup["secret"], f"{tag}-single", min(args.seconds, 15.0)))
        results["api_single_p50_ms"] = pct(lat, 0.5) * 1000
        results["api_single_p99_ms"] = pct(lat, 0.99) * 1000
        with mp.Pool(args.clients) as pool:
            started = time.perf_counter()
            singles = pool.map(
                single_client,
                [(port, setup["secret"], f"{tag}-s{c}", min(args.seconds, 15.0)) for c in range(args.clients)],
            )
            elapsed = time.perf_counter() - started
        results["api_single_ev_s"] = sum(x[0] for x in singles) / elapsed
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(20)
    return results


# ------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--raw-events", type=int, default=200_000)
    parser.add_argument("--agg-sizes", default="1000000,10000000")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--skip-api", action="store_true", help="skip the HTTP load (and its baselines)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    import django

    django.setup()
    url = bench_database_url()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "API_DEFAULT_RATE_PER_MINUTE": "100000000",
        "SECURE_SSL_REDIRECT": "false",  # plain http over loopback, as in front of a TLS proxy
        "LOG_LEVEL": "WARNING",
        "REDIS_KEY_PREFIX": "billing-bench",
        "CELERY_QUEUE": "billing-bench",
    }
    print(f"database {url.split('@')[-1]}; preparing…", flush=True)
    setup = prepare(env)
    results: dict[str, Any] = {
        "machine": os.uname().nodename,
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not args.skip_api:
        results.update(api_load(env, setup, args))
        print(f"raw PostgreSQL: {args.raw_events:,} rows each way…", flush=True)
        results.update(raw_baselines(url, setup["key_id"], args.raw_events, args.batch_size))
    sizes = [int(s) for s in args.agg_sizes.split(",") if s]
    if sizes:
        print(f"aggregation: {', '.join(f'{s:,}' for s in sizes)} events…", flush=True)
        results.update(aggregation(env, url, setup["key_id"], sizes))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict[str, Any]) -> None:
    def ratio(a: str, b: str) -> str:
        return f"{r[a] / r[b]:.2f}×" if r.get(a) and r.get(b) else "—"

    lines = [
        "",
        f"| measure ({r['clients']} clients, {r['workers']} sync workers) | value | baseline (same run) | ratio |",
        "| --- | ---: | --- | ---: |",
    ]
    if "api_batch_ev_s" in r:
        lines += api_lines(r, ratio)
    for key in sorted(k for k in r if k.startswith("aggregate_") and k.endswith("_s") and not k.endswith("ev_s")):
        size = int(key.split("_")[1])
        lines.append(
            f"| aggregate {size:,} events into hourly rollups | {r[key]:.1f} s "
            f"({r[key.replace('_s', '_ev_s')]:,.0f} ev/s) | | |"
        )
    print("\n".join(lines))


def api_lines(r: dict[str, Any], ratio: Any) -> list[str]:
    return [
        f"| batch API, events/s | {r['api_batch_ev_s']:,.0f} | raw multi-row INSERT … ON CONFLICT "
        f"{r['raw_multirow_on_conflict_ev_s']:,.0f} | {ratio('api_batch_ev_s', 'raw_multirow_on_conflict_ev_s')} |",
        f"| batch API, events/s | {r['api_batch_ev_s']:,.0f} | raw COPY → temp table → INSERT … ON CONFLICT "
        f"{r['raw_copy_stage_on_conflict_ev_s']:,.0f} | {ratio('api_batch_ev_s', 'raw_copy_stage_on_conflict_ev_s')} |",
        f"| batch API, events/s | {r['api_batch_ev_s']:,.0f} | raw COPY (not idempotent) {r['raw_copy_ev_s']:,.0f} | "
        f"{ratio('api_batch_ev_s', 'raw_copy_ev_s')} |",
        f"| batch API, p50 / p99 per 1000-event request | {r['api_batch_p50_ms']:.0f} / {r['api_batch_p99_ms']:.0f} ms"
        " | | |",
        f"| single event, p50 latency | {r['api_single_p50_ms']:.2f} ms | raw single-row INSERT "
        f"{r['raw_single_p50_ms']:.2f} ms | {ratio('api_single_p50_ms', 'raw_single_p50_ms')} |",
        f"| single event, p99 latency | {r['api_single_p99_ms']:.2f} ms | raw single-row INSERT "
        f"{r['raw_single_p99_ms']:.2f} ms | {ratio('api_single_p99_ms', 'raw_single_p99_ms')} |",
        f"| single events, events/s ({r['clients']} clients) | {r['api_single_ev_s']:,.0f} | raw single-row, 1 conn "
        f"{r['raw_single_ev_s']:,.0f} | {ratio('api_single_ev_s', 'raw_single_ev_s')} |",
    ]


if __name__ == "__main__":
    sys.exit(main())
