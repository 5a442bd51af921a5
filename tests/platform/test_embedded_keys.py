"""The embedded engines' personal data key is the one settings would derive from the same
SECRET_KEY (so data written before the key was kept apart still reads), and the start-up
check warns when a production-like process runs on the derived key."""

from __future__ import annotations

import base64
import hashlib
import hmac

from billing_project.checks import check_personal_data_keys
from billing_project.embedded import derived_personal_data_key


def test_the_embedded_key_is_what_settings_derive():
    secret = "s3cret-for-this-test"
    expected = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), b"billing personal data at rest", hashlib.sha256).digest()
    ).decode()
    assert derived_personal_data_key(secret) == expected
    source = (__import__("pathlib").Path(__file__).resolve().parents[2] / "billing_project" / "settings.py").read_text()
    assert 'b"billing personal data at rest"' in source  # the settings' derivation uses the same label


def test_a_derived_key_outside_debug_is_warned_of(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.delenv("PERSONAL_DATA_KEY", raising=False)
    assert [m.id for m in check_personal_data_keys()] == ["billing.W002"]
    monkeypatch.setenv("PERSONAL_DATA_KEY", settings.PERSONAL_DATA_KEY)
    assert check_personal_data_keys() == []
