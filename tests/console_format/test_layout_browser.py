"""The console's pages fit a 1,400-pixel window in a real browser (Chromium from Debian's
packages; no browser download). Found: the draft editor's charges overflowed it by 150
pixels (seven full-width inputs a row), and read-only cells wrapped amounts mid-number.

The page is loaded with the admin's strict Content-Security-Policy: a console error (a
blocked inline script or style) fails the test too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from plans.models import PlanVersion
from plans.services import plan_version_copy_to_draft
from tests.conftest import verified_login

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    # where the browser is required (CI: .ci/run installs it) a missing one fails at launch, never skips
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason="Chromium (Debian's package) is not installed: `apt-get install chromium`",
    ),
]
WIDTH = 1400
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MEASURE = """() => {
  const out = [];
  for (const el of document.querySelectorAll('#content *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > window.innerWidth + 1)
      out.push(`${el.tagName}.${el.className} ends at ${Math.round(r.right)}`);
  }
  // a table in a scrolling box (the change list's results, an inline) hides columns
  for (const el of document.querySelectorAll('#content .results, #content .inline-group .tabular')) {
    if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.className} clipped: ${el.scrollWidth} > ${el.clientWidth}`);
  }
  for (const el of document.querySelectorAll('.money, .quantity, .explanation-row')) {
    if (el.getClientRects().length > 1) out.push(`${el.className} "${el.textContent}" wraps`);
  }
  return {width: document.documentElement.scrollWidth, problems: out.slice(0, 10)};
}"""


@contextmanager
def chromium(session: str, url: str) -> Iterator[Any]:
    """A 1,400-pixel page logged in with `session`. Playwright's sync API runs an event loop
    in this thread, and Django refuses the ORM under one: every query comes before."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": url}])
        page = context.new_page()
        errors: list[str] = []
        # a blocked script or style, a stylesheet that failed (the browser asks for a favicon
        # no one serves: not ours to fail on)
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
        )
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
        )
        try:
            yield page, errors
        finally:
            browser.close()


def visit(page: Any, url: str, name: str, shots: Path) -> dict[str, Any]:
    response = page.goto(url)
    assert response.status == 200, url
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    result: dict[str, Any] = page.evaluate(MEASURE)
    return result


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Screenshots: kept under $BROWSER_SHOTS when set (CI artefacts), else the test's tmp dir."""
    where = Path(os.environ.get("BROWSER_SHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_consoles_pages_fit_1400_pixels(transactional_db, live_server, admin_user, usage_invoice, shots):
    published = PlanVersion.objects.get(plan__code="enterprise", status="published")
    draft = plan_version_copy_to_draft(version=published)
    pages = {
        "invoice": f"/admin/invoicing/invoice/{usage_invoice.pk}/change/",
        "document": f"/admin/invoicing/invoice/{usage_invoice.pk}/document/",
        "invoices": "/admin/invoicing/invoice/",
        "subscription": f"/admin/subscriptions/subscription/{usage_invoice.subscription_id}/change/",
        "subscriptions": "/admin/subscriptions/subscription/",
        "draft-version": f"/admin/plans/planversion/{draft.pk}/change/",
        "published-version": f"/admin/plans/planversion/{published.pk}/change/",
        "draft-charge": f"/admin/plans/charge/{draft.charges.get(metric__code='ai_tokens').pk}/change/",
        "credit-entries": "/admin/invoicing/creditentry/",
        "refunds": "/admin/invoicing/refund/",
        "proration-items": "/admin/subscriptions/prorationitem/",
        "plan-versions": "/admin/plans/planversion/",
        "usage-events": "/admin/usage/usageevent/",
        "index": "/admin/",
    }
    client = Client()
    verified_login(client, admin_user)
    with chromium(client.cookies["sessionid"].value, live_server.url) as (page, errors):
        measured = {name: visit(page, live_server.url + path, name, shots) for name, path in pages.items()}
        wide = {name: m for name, m in measured.items() if m["width"] > WIDTH or m["problems"]}
        assert wide == {}
        assert errors == []
