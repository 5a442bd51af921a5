"""Catalog documents for tests, in file form."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEMO = Path(__file__).resolve().parents[2] / "plans" / "fixtures" / "demo_catalog.yaml"

SMALL: dict[str, Any] = {
    "currency": "USD",
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count", "properties": ["endpoint"]},
        {"code": "tokens", "name": "Tokens", "aggregation": "sum", "properties": ["model"]},
    ],
    "features": [
        {"code": "chat", "name": "Chat", "on_unavailable": "allow"},
        {"code": "api", "name": "API", "metric": "api_calls"},
        {"code": "tokens", "name": "Tokens", "metric": "tokens"},
    ],
    "plans": [
        {
            "code": "pro",
            "name": "Pro",
            "interval": "month",
            "currency": "USD",
            "base_fee": "49.00",
            "trial_days": 14,
            "charges": [
                {
                    "metric": "api_calls",
                    "model": "package",
                    "package_size": "1000",
                    "package_price": "0.50",
                    "free_units": "10000",
                },
                {
                    "metric": "tokens",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": "100000", "unit_price": "0"},
                        {"up_to": None, "unit_price": "0.00002"},
                    ],
                },
            ],
            "entitlements": [
                {"feature": "chat"},
                {"feature": "api", "limit": "100000", "overage": "bill"},
                {"feature": "tokens", "limit": "2000000", "overage": "block"},
            ],
        },
    ],
}


def small() -> dict[str, Any]:
    return copy.deepcopy(SMALL)


def demo() -> Any:
    from plans.catalog import load_file

    return load_file(DEMO)


def write(tmp_path: Path, doc: dict[str, Any], name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
