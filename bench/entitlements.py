"""Entitlement check benchmark: the check endpoint beside a bare Django view, in one run.

    bench/entitlements [--seconds 15] [--connections 16] [--workers 2]

Starts the service and a bare Django view (bench/bare.py) under gunicorn with the same
sync workers, warms the check's caches, then loads each with wrk over loopback and
prints throughput and p50/p99 latency of the check as ratios of the bare view's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import bench_database_url, free_port  # noqa: E402

PREPARE = """
import json, django
django.setup()
from plans.catalog import load_file
from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert, subscription_create
from subscriptions.selectors import live_subscription
from billing_project.api_keys import api_key_create
from pathlib import Path
catalog_import(spec=catalog_validate(load_file(Path('plans/fixtures/demo_catalog.yaml'))))
tenant = tenant_upsert(external_id='bench-check', name='Bench check', currency='USD')[0]
if live_subscription(tenant) is None:
    subscription_create(tenant=tenant, plan_code='pro', actor='bench')
key = api_key_create(name='bench-check', kind='service', scopes=['entitlements:read'])
print(json.dumps({'secret': key.secret}))
"""


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz" if "wsgi" in cmd[3] else f"http://127.0.0.1:{port}/bare", timeout=1
            ):  # noqa: S310
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{cmd} did not come up")


def wrk(url: str, seconds: float, connections: int, env: dict[str, str], script: str | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses\n{out}")

    def pct(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rate, "p50_ms": pct("50"), "p99_ms": pct("99")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="gthread workers with this many threads (1: sync)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate the two servers this many times; medians are reported"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    import django

    django.setup()
    url = bench_database_url()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "API_DEFAULT_RATE_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
        "REDIS_KEY_PREFIX": "billing-bench",
        "CELERY_QUEUE": "billing-bench",
    }
    print(f"database {url.split('@')[-1]}; preparing…", flush=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", PREPARE], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    secret = json.loads(out.stdout.strip().splitlines()[-1])["secret"]
    app_port, bare_port = free_port(), free_port()
    gunicorn = [sys.executable, "-m", "gunicorn"]
    common = ["--workers", str(args.workers), "--log-level", "warning"]
    if args.threads > 1:
        common += ["--worker-class", "gthread", "--threads", str(args.threads)]
    app = start([*gunicorn, "billing_project.wsgi", "--bind", f"127.0.0.1:{app_port}", *common], env, app_port)
    bare_env = {**env, "DJANGO_SETTINGS_MODULE": "bench.bare"}
    bare = start(
        [*gunicorn, "bench.bare:application", "--bind", f"127.0.0.1:{bare_port}", *common], bare_env, bare_port
    )
    results: dict[str, Any] = {"workers": args.workers, "connections": args.connections, "seconds": args.seconds}
    try:
        body = json.dumps({"tenant": "bench-check", "feature": "ai_tokens", "quantity": "1000"})
        wrk_env = {**env, "CHECK_BODY": body, "CHECK_KEY": secret}
        check_url = f"http://127.0.0.1:{app_port}/api/v1/entitlements/check"
        request = urllib.request.Request(
            check_url,
            data=body.encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        for _ in range(20):  # warm: key, context and counter cached in Redis, every worker connected
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                answer = json.loads(response.read())
        print(f"a check answers: {answer['allowed']} / {answer['reason']}", flush=True)
        script = str(ROOT / "bench" / "check.lua")
        rounds: dict[str, list[dict[str, float]]] = {"bare": [], "check": []}
        for n in range(1, args.rounds + 1):  # alternated, so drifts in the machine hit both alike
            print(
                f"round {n}/{args.rounds}: bare view, then the check; wrk {args.connections} connections, "
                f"{args.seconds:.0f} s each…",
                flush=True,
            )
            rounds["bare"].append(wrk(f"http://127.0.0.1:{bare_port}/bare", args.seconds, args.connections, wrk_env))
            rounds["check"].append(wrk(check_url, args.seconds, args.connections, wrk_env, script))
        results["rounds"] = rounds
        for side, runs in rounds.items():
            results[side] = {m: statistics.median(r[m] for r in runs) for m in ("rps", "p50_ms", "p99_ms")}
    finally:
        for proc in (app, bare):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    b, c = results["bare"], results["check"]
    print(f"""
| measure ({args.workers} sync workers, wrk {args.connections} conn., median of {args.rounds}) \
| entitlement check | bare Django view | ratio |
| --- | ---: | ---: | ---: |
| requests/s | {c["rps"]:,.0f} | {b["rps"]:,.0f} | {c["rps"] / b["rps"]:.2f}× |
| p50 latency | {c["p50_ms"]:.2f} ms | {b["p50_ms"]:.2f} ms | {c["p50_ms"] / b["p50_ms"]:.2f}× |
| p99 latency | {c["p99_ms"]:.2f} ms | {b["p99_ms"]:.2f} ms | {c["p99_ms"] / b["p99_ms"]:.2f}× |
""")
    for n, (rb, rc) in enumerate(zip(rounds["bare"], rounds["check"], strict=True), start=1):
        print(
            f"round {n}: check {rc['rps']:,.0f}/s p99 {rc['p99_ms']:.2f} ms; bare {rb['rps']:,.0f}/s "
            f"p99 {rb['p99_ms']:.2f} ms; p99 ratio {rc['p99_ms'] / rb['p99_ms']:.2f}×"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
