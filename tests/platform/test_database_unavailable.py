"""A dropped database connection is not a bug: the API answers 503 `service_unavailable`
with Retry-After (was 500 `internal_error`), also when the connection dies during COMMIT,
so that the outcome is unknown; the client's retry with the same idempotency key is then
safe: the event is stored once."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import close_old_connections, connection

from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo
from usage.models import UsageEvent

pytestmark = [pytest.mark.django_db(transaction=True)]
URL = "/api/v1/usage/events"
EVENT = {"tenant": "acme", "metric": "ai_tokens", "quantity": "7", "idempotency_key": "retry-me"}


def admin_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params = {k: v for k, v in params.items() if k not in ("cursor_factory", "context", "options")}
    return psycopg.connect(**params, autocommit=True)


@pytest.fixture
def key(make_key, clock):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="team", actor="test")
    return make_key("service", metrics=["ai_tokens"])


@pytest.fixture
def killed_at_commit() -> Iterator[None]:
    """A deferred constraint trigger that terminates its own backend when the transaction
    that inserted the event `retry-me` commits, the first time only: the connection dies
    inside COMMIT, and the client cannot know whether it was stored (it was not)."""
    with admin_connection() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS fault_once (done boolean)")
        admin.execute("TRUNCATE fault_once")
        admin.execute(
            """
            CREATE OR REPLACE FUNCTION fault_kill_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.idempotency_key = 'retry-me' AND NOT EXISTS (SELECT 1 FROM fault_once) THEN
                -- recorded outside this transaction (it is about to die), so the retry passes
                PERFORM dblink_exec('dbname=' || current_database(), 'INSERT INTO fault_once VALUES (true)');
                PERFORM pg_terminate_backend(pg_backend_pid());
              END IF;
              RETURN NULL;
            END $$
            """
        )
        admin.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        admin.execute("DROP TRIGGER IF EXISTS fault_kill_at_commit ON usage_usageevent")
        admin.execute(
            "CREATE CONSTRAINT TRIGGER fault_kill_at_commit AFTER INSERT ON usage_usageevent "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fault_kill_at_commit()"
        )
    try:
        yield
    finally:
        with admin_connection() as admin:
            admin.execute("DROP TRIGGER IF EXISTS fault_kill_at_commit ON usage_usageevent")
            admin.execute("DROP TABLE IF EXISTS fault_once")


def assert_retriable(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "2"
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"] == {"retry_after_seconds": 2}


def test_a_connection_the_database_dropped_is_503_with_retry_after(api, key):
    connection.ensure_connection()
    with admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    assert_retriable(api.post(URL, EVENT, format="json", **key.header))
    # the broken connection is dropped when the request finishes (Django's request_finished,
    # which the test client does not send); the retry then stores the event
    close_old_connections()
    retry = api.post(URL, EVENT, format="json", **key.header)
    assert (retry.status_code, retry.json()["status"]) == (201, "accepted"), retry.content
    assert UsageEvent.objects.count() == 1


def test_a_commit_whose_outcome_is_unknown_is_503_and_the_retry_stores_the_event_once(api, key, killed_at_commit):
    assert_retriable(api.post(URL, EVENT, format="json", **key.header))
    close_old_connections()
    assert UsageEvent.objects.count() == 0  # it died in COMMIT: not stored
    retry = api.post(URL, EVENT, format="json", **key.header)
    assert (retry.status_code, retry.json()["status"]) == (201, "accepted"), retry.content
    again = api.post(URL, EVENT, format="json", **key.header)
    assert (again.status_code, again.json()["status"], again.json()["id"]) == (200, "duplicate", retry.json()["id"])
    assert UsageEvent.objects.count() == 1
