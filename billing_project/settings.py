"""Settings: read from the environment only (12-factor).

Nothing here touches the network or starts anything. When DATABASE_URL or
REDIS_URL are unset, `manage.py`, `make run` and `make test` start the embedded
engines (billing_project/embedded.py) and export the URLs *before* Django loads
this module; anything else that imports it without them gets a clear error.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):  # type: ignore[misc]
    """django-environ, naming the variable when a number is not one (start-up refuses it;
    billing_project/checks.py then checks the ranges)."""

    def int(self, var: str, default: object = environ.Env.NOTSET) -> builtins.int:
        try:
            return builtins.int(super().int(var, default=default))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{var} must be a whole number; it is {self.str(var)!r}.") from exc

    def int_list(self, var: str, default: list[builtins.int]) -> list[builtins.int]:
        raw = self.list(var, default=[str(d) for d in default])
        try:
            return [builtins.int(d) for d in raw]
        except ValueError as exc:
            raise ImproperlyConfigured(f"{var} must be whole numbers separated by commas; it is {raw!r}.") from exc


env = _Env()


def _required(name: str) -> str:
    value: str = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Run through `make run` / `make test` or "
            f"`.venv/bin/python manage.py …`, which start the embedded engines under .data/, "
            f"or set {name} yourself (see README, Configuration)."
        )
    return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _required("SECRET_KEY")
# Keys the pseudonyms of usage events' personal properties (usage/pseudonyms.py). Set it apart
# from SECRET_KEY (rotating that must not re-key stored pseudonyms); derived from it if unset.
PSEUDONYM_KEY = (
    env.str("PSEUDONYM_KEY", default="")
    or hmac.new(SECRET_KEY.encode(), b"billing usage pseudonyms", hashlib.sha256).hexdigest()
)
# Encrypts personal fields at rest (billing_project/personal_data.py): a Fernet key (32 bytes,
# URL-safe base64). Older keys, still decrypting while `personal_data rekey` moves their
# values to the new one, go in the fallbacks. Derived from SECRET_KEY if unset (set it apart
# in production: rotating SECRET_KEY must not make stored personal data unreadable).
PERSONAL_DATA_KEY = (
    env.str("PERSONAL_DATA_KEY", default="")
    or base64.urlsafe_b64encode(
        hmac.new(SECRET_KEY.encode(), b"billing personal data at rest", hashlib.sha256).digest()
    ).decode()
)
PERSONAL_DATA_KEY_FALLBACKS = env.list("PERSONAL_DATA_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# The proxies in front (addresses or networks) whose X-Forwarded-For is believed
# (billing_project/net.py). Empty: the client is REMOTE_ADDR.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "billing_project.apps.BillingAdminConfig",  # django.contrib.admin, with the console's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "auditlog",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "djstripe",
    "billing_project.apps.BillingProjectConfig",
    "plans.apps.PlansConfig",
    "subscriptions.apps.SubscriptionsConfig",
    "usage.apps.UsageConfig",
    "entitlements.apps.EntitlementsConfig",
    "invoicing.apps.InvoicingConfig",
    "webhooks.apps.WebhooksConfig",
    "approvals.apps.ApprovalsConfig",
    "console.apps.ConsoleConfig",
    "privacy.apps.PrivacyConfig",  # GDPR access (export): asks each app for what it holds
    "agents.apps.AgentsConfig",  # the MCP tool server (manage.py mcp_server): no models
]

MIDDLEWARE = [
    "billing_project.middleware.RequestContextMiddleware",
    "billing_project.middleware.ApiBodyLimitMiddleware",
    "billing_project.middleware.ApiUnavailableMiddleware",
    "billing_project.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_project.middleware.StaffSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "billing_project.middleware.StaffAuthenticationMiddleware",
    "billing_project.middleware.StaffOTPMiddleware",
    "billing_project.staff_otp.StaffSecondFactorMiddleware",
    "billing_project.middleware.StaffAuditlogMiddleware",
    "billing_project.middleware.StaffMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that it sees the authenticated staff user and locks out guessers.
    "billing_project.middleware.StaffAxesMiddleware",
]

ROOT_URLCONF = "billing_project.urls"
WSGI_APPLICATION = "billing_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------- PostgreSQL
DATABASES = {"default": env.db_url_config(_required("DATABASE_URL"))}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL: the project runs on nothing else.")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A database that does not answer a connect within seconds is down: fail (503, a retry) rather than hang.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
# Behind PgBouncer in transaction mode (DATABASE_POOLER=transaction) a client's statements
# may run on a different server connection each transaction: no server-side prepared
# statements (psycopg's automatic preparing) and no server-side cursors, which outlive a
# transaction. Nothing else here keeps session state: advisory locks are transaction-scoped
# and settings are SET LOCAL (SCALING.md).
DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
if DATABASE_POOLER not in ("", "transaction"):
    raise ImproperlyConfigured("DATABASE_POOLER is empty (direct) or 'transaction' (PgBouncer in transaction mode).")
if DATABASE_POOLER == "transaction":
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------- Redis
REDIS_URL = _required("REDIS_URL")
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="billing")
# Usage counters (usage/counters.py): how long a counter is trusted before the first read
# after re-checks PostgreSQL for counters that missed an update, and how old a writer's
# pending mark may grow before its counter is presumed to have missed its increment.
COUNTER_TRUST_MS = env.int("COUNTER_TRUST_MS", default=1000)
COUNTER_PENDING_GRACE_MS = env.int("COUNTER_PENDING_GRACE_MS", default=5000)
# Hosts a Stripe Checkout may send the tenant's user back to (success_url, cancel_url; https only).
CHECKOUT_ALLOWED_HOSTS = [host.lower() for host in env.list("CHECKOUT_ALLOWED_HOSTS", default=[])]
# /metrics answers only the bearer of this token (with DEBUG on and none set: anyone).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# /readyz: every probe answers within this, and beat's heartbeat (every 30 s) is younger than that.
READYZ_DEADLINE_SECONDS = env.float("READYZ_DEADLINE_SECONDS", default=0.9)
READYZ_HEARTBEAT_MAX_AGE_SECONDS = env.int("READYZ_HEARTBEAT_MAX_AGE_SECONDS", default=120)


def _broker_url(redis_url: str) -> str:
    # kombu spells a Unix-socket Redis differently from redis-py.
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


# Every Redis and broker connection has connect and socket timeouts: a Redis that accepts
# connections and never answers must fail a call in seconds, not hang a web worker, the
# Celery worker's consumer or beat's sender (all of them froze for minutes once).
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=5.0)
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=3.0)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX + "-cache",
        "TIMEOUT": 300,
        "OPTIONS": {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT},
    }
}

# ---------------------------------------------------------------- Celery
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_broker_url(REDIS_URL))
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_broker_url(REDIS_URL))
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": 10,
    "retry_on_timeout": False,  # a hung Redis: fail, reconnect, and say so; never wait on it
}
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 10
# A send to a broker that does not answer gives up within seconds; what it was for is in
# PostgreSQL, and the sweepers re-queue it (billing_project/jobs.py).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_TIMEZONE = "UTC"
# Keep Django's LOGGING (JSON lines with request id) in worker and beat too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Deployments sharing one Redis keep apart by queue and key prefix.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="billing")
# `celery worker -B -S …` means a state file, not a scheduler: name it here.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "worker-heartbeat": {"task": "billing_project.tasks.heartbeat", "schedule": 30.0},
    # Period boundaries: trial ends, renewals, scheduled changes and cancellations.
    "roll-due-subscriptions": {"task": "subscriptions.tasks.roll_due_subscriptions", "schedule": 60.0},
    "aggregate-usage": {"task": "usage.tasks.aggregate_usage", "schedule": 60.0},
    "reconcile-usage-counters": {"task": "entitlements.tasks.reconcile_usage_counters", "schedule": 300.0},
    "close-periods": {"task": "invoicing.tasks.close_periods", "schedule": 300.0},
    "collect-pending-invoices": {"task": "invoicing.tasks.collect_pending_invoices", "schedule": 900.0},
    "invoice-late-usage": {"task": "invoicing.tasks.invoice_late_usage", "schedule": 3600.0},
    "retry-due-payments": {"task": "invoicing.tasks.retry_due_payments", "schedule": 3600.0},
    # Unused credit past its grant's expiry is written off (balances never count it meanwhile).
    "expire-credits": {"task": "invoicing.tasks.expire_credits", "schedule": 3600.0},
    # Requested refunds whose submission to Stripe was lost, or is due again after a back-off.
    "submit-pending-refunds": {"task": "invoicing.tasks.submit_pending_refunds", "schedule": 300.0},
    "suspend-overdue-subscriptions": {"task": "subscriptions.tasks.suspend_overdue_subscriptions", "schedule": 3600.0},
    # Pending approval requests past APPROVAL_EXPIRY_DAYS expire (a refund awaiting approval is canceled).
    "expire-approval-requests": {"task": "approvals.tasks.expire_approval_requests", "schedule": 3600.0},
    # Stripe events whose processing was never queued (the broker was down right after they were stored).
    "process-pending-stripe-events": {"task": "webhooks.tasks.process_pending_stripe_events", "schedule": 300.0},
    # The audit chain: links sealed every minute, its head recorded daily (billing_project/chain.py).
    "seal-audit-chain": {"task": "billing_project.tasks.seal_audit_chain", "schedule": 60.0},
    "record-audit-chain-head": {"task": "billing_project.tasks.record_audit_chain_head", "schedule": 86400.0},
    # erased tenants' invoices whose retention ended lose their buyer; Stripe erasures retried
    "erase-retained-buyers": {"task": "privacy.tasks.erase_retained_buyers", "schedule": 86400.0},
    "retry-stripe-erasures": {"task": "privacy.tasks.retry_stripe_erasures", "schedule": 600.0},
    # usage_usageevent's monthly partitions made ahead; events caught by the default one moved
    "ensure-usage-partitions": {"task": "usage.tasks.ensure_usage_partitions", "schedule": 3600.0},
    # Our invoices, payments and refunds against Stripe's (invoicing/reconciliation.py), daily at 03:30 UTC.
    "reconcile-with-stripe": {
        "task": "invoicing.tasks.reconcile_with_stripe",
        "schedule": crontab(hour=3, minute=30),
    },
}

# ---------------------------------------------------------------- Auth, staff
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Admin login guessing: lock a username+IP pair after this many failures.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# The client's address as the trusted proxy reports it, never a header a client sends.
AXES_CLIENT_IP_CALLABLE = "billing_project.net.client_address"
# Across addresses, a username guessed at too often is slowed down, not locked out
# (billing_project/login_throttle.py): past this many failures in the window, one attempt
# per delay, the delay doubling up to its maximum.
LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN = env.int("LOGIN_USERNAME_FAILURES_BEFORE_SLOWDOWN", default=10)
LOGIN_USERNAME_WINDOW_SECONDS = env.int("LOGIN_USERNAME_WINDOW_SECONDS", default=900)
LOGIN_USERNAME_MAX_DELAY_SECONDS = env.int("LOGIN_USERNAME_MAX_DELAY_SECONDS", default=60)
# axes looks for its own middleware by name; ours subclasses it (staff pages only).
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

# ---------------------------------------------------------------- transport and sessions
# Production-safe whenever DEBUG is off: HTTPS only (redirect, HSTS, Secure cookies). Each
# can be turned off by its variable for a server reached over plain HTTP on purpose (`make
# run` on localhost does; README, Security).
_TLS = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_TLS)
# A load balancer's health checks come over plain HTTP: the probes are not redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_TLS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_TLS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_TLS)


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """`X-Forwarded-Proto: https` → Django's ("HTTP_X_FORWARDED_PROTO", "https"); empty: none.
    Set it only behind a proxy that sets (and strips from clients) that header."""
    if not value.strip():
        return None
    name, sep, expected = value.partition(":")
    if not sep or not name.strip() or not expected.strip():
        raise ImproperlyConfigured(
            f"PROXY_SSL_HEADER is 'Header-Name: value' (e.g. 'X-Forwarded-Proto: https'), not {value!r}."
        )
    return "HTTP_" + name.strip().upper().replace("-", "_"), expected.strip()


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env.str("PROXY_SSL_HEADER", default=""))
# Staff sessions last a working day at most, and end when the browser closes.
SESSION_COOKIE_AGE = env.int("STAFF_SESSION_SECONDS", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy of the admin and of invoice documents (billing_project/middleware.py).
CSP_ADMIN = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self' 'unsafe-inline'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
CSP_DOCUMENT = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ]
)

# ---------------------------------------------------------------- i18n, time
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# Dates as finance writes them, 2026-01-15 00:00, not "Jan. 15, 2026, midnight" (UTC, as TIME_ZONE).
FORMAT_MODULE_PATH = ["billing_project.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# ---------------------------------------------------------------- API
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
# Requests per minute per key unless the key carries its own rate (admin-editable).
API_DEFAULT_RATE_PER_MINUTE = env.int("API_DEFAULT_RATE_PER_MINUTE", default=60_000)
# How long an authenticated key is remembered in Redis before PostgreSQL is asked again.
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=60)
# Failed API authentications per client address and minute, before they answer 429.
API_AUTH_FAILURES_PER_MINUTE = env.int("API_AUTH_FAILURES_PER_MINUTE", default=30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["billing_project.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["billing_project.api_auth.ApiKeyPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["billing_project.api_auth.ApiKeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["billing_project.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "billing_project.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing service API",
    "DESCRIPTION": "The service-facing contract: usage, entitlements, catalog, tenants, "
    "subscriptions, invoices and proposals. Authenticate with `Authorization: Bearer <api key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "billing_project.api_schema.document_errors",
    ],
}

# ---------------------------------------------------------------- Four eyes
# Above these amounts (per currency) a credit, refund or credit note waits for a second
# person's approval; a currency not listed always does. "USD:500,EUR:500,JPY:75000".
APPROVAL_THRESHOLDS = env.str("APPROVAL_THRESHOLDS", default="USD:500,EUR:500,GBP:500,JPY:75000")
APPROVAL_EXPIRY_DAYS = env.int("APPROVAL_EXPIRY_DAYS", default=7)
# An agent key's proposals an hour: each one is read by a person (429 `rate_limited` past it).
PROPOSALS_PER_KEY_PER_HOUR = env.int("PROPOSALS_PER_KEY_PER_HOUR", default=60)
# Staff second factor (billing_project/staff_otp.py): the name authenticator apps show.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Billing")

# ---------------------------------------------------------------- Entitlements
# A past-due subscription keeps its plan this long (dunning), then is treated as suspended.
DUNNING_GRACE_DAYS = env.int("DUNNING_GRACE_DAYS", default=7)
# Our retries of a failed payment, in days after the first failure (within the grace).
DUNNING_RETRY_DAYS = env.int_list("DUNNING_RETRY_DAYS", default=[1, 3, 5])

# ---------------------------------------------------------------- Stripe / dj-stripe
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
# Not a secret: dj-stripe insists on a key of the right shape even offline.
STRIPE_TEST_SECRET_KEY = env.str("STRIPE_TEST_SECRET_KEY", default="sk_test_" + "0" * 24)
STRIPE_LIVE_SECRET_KEY = env.str("STRIPE_LIVE_SECRET_KEY", default="")
# The endpoint's signing secret (whsec_…). Empty: POST /webhooks/stripe/ refuses everything (503).
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Stripe's events are a few KiB; anything near this is not one (413 before verifying).
STRIPE_WEBHOOK_MAX_BODY_BYTES = env.int("STRIPE_WEBHOOK_MAX_BODY_BYTES", default=512 * 1024)
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-05-27.dahlia")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # a local fake Stripe in tests
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
# Stripe Tax: when on, a draft invoice is sent to Stripe first and finalized with the tax
# Stripe computes; when off, invoices carry no tax lines and say so.
STRIPE_TAX_ENABLED = env.bool("STRIPE_TAX_ENABLED", default=False)
# Collection at Stripe: on by default once a real secret key is configured. Off (the demo,
# or before go-live), invoices are issued and stay open for staff to settle.
_stripe_key = STRIPE_LIVE_SECRET_KEY if STRIPE_LIVE_MODE else STRIPE_TEST_SECRET_KEY
_placeholder_key = set(_stripe_key.removeprefix("sk_test_").removeprefix("sk_live_")) <= {"0"}
STRIPE_COLLECTION_ENABLED = env.bool("STRIPE_COLLECTION_ENABLED", default=not _placeholder_key)
# The daily reconciliation compares what was created in these last days (longer than the 30
# days Stripe keeps its events); it runs only while collection at Stripe is on.
STRIPE_RECONCILIATION_DAYS = env.int("STRIPE_RECONCILIATION_DAYS", default=35)

# ---------------------------------------------------------------- Invoicing
INVOICE_SERIES = env.str("INVOICE_SERIES", default="INV")
CREDIT_NOTE_SERIES = env.str("CREDIT_NOTE_SERIES", default="CN")
# Late events for a closed period are awaited this long before its invoice is drafted.
INVOICE_GRACE_MINUTES = env.int("INVOICE_GRACE_MINUTES", default=60)
# The period close fans out: subscriptions due are closed in chunks of this many, each a
# task any worker runs; a subscription queued is not queued again for the claim's seconds.
INVOICE_CLOSE_CHUNK = env.int("INVOICE_CLOSE_CHUNK", default=100)
INVOICE_CLOSE_CLAIM_SECONDS = env.int("INVOICE_CLOSE_CLAIM_SECONDS", default=900)
INVOICE_DUE_DAYS = env.int("INVOICE_DUE_DAYS", default=14)
# Usage of periods that ended this long ago is re-priced at each close for late events.
LATE_USAGE_WINDOW_DAYS = env.int("LATE_USAGE_WINDOW_DAYS", default=90)
# usage_usageevent is partitioned by month (usage/partitions.py): the beat job keeps this
# month's partition and this many more ahead.
USAGE_PARTITIONS_AHEAD = env.int("USAGE_PARTITIONS_AHEAD", default=3)
# The seller's country (ISO 3166-1 alpha-2): printed, and its law says how long invoices
# keep an erased tenant's buyer (PRIVACY_RETENTION_YEARS).
INVOICE_SELLER_COUNTRY = env.str("INVOICE_SELLER_COUNTRY", default="US").upper()
INVOICE_SELLER = {
    "name": env.str("INVOICE_SELLER_NAME", default="Example Platform Inc."),
    "address": env.str("INVOICE_SELLER_ADDRESS", default="1 Example Street, Springfield"),
    "country": INVOICE_SELLER_COUNTRY,
    "tax_id": env.str("INVOICE_SELLER_TAX_ID", default=""),
    "email": env.str("INVOICE_SELLER_EMAIL", default="billing@example.com"),
}
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

# ---------------------------------------------------------------- Privacy
# Years an issued invoice is kept whole (its buyer included) after the end of the calendar
# year it was issued in, per seller country; README "Privacy and compliance" has the sources.
# A country not listed keeps the longest period. Override: PRIVACY_RETENTION_YEARS="DE=8,FR=10".
PRIVACY_RETENTION_YEARS: dict[str, int] = {
    code.strip().upper(): int(years)
    for code, years in (
        pair.split("=", 1) for pair in env.str("PRIVACY_RETENTION_YEARS", default="DE=8,FR=10,GB=6,US=7").split(",")
    )
}

# ---------------------------------------------------------------- Audit
AUDITLOG_CID_GETTER = "billing_project.observability.current_request_id"
AUDITLOG_DISABLE_REMOTE_ADDR = False

# ---------------------------------------------------------------- Logging
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "billing_project.observability.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "celery": {"level": "INFO"},
        "pgserver": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
