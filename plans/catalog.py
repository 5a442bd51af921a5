"""The catalog file (CATALOG.md): reading, validating and writing it. Pure: no ORM.

`parse_catalog` turns a loaded YAML/JSON document into a `CatalogSpec` and the
list of every problem found, each with its path (`plans[1].charges[0].tiers`),
so that an invalid file is rejected whole before anything is written.
Checks against what is already in the database live in plans/services.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import yaml

from billing_project.money import exponent as currency_exponent
from billing_project.money import format_decimal, known_currencies

from .pricing import MODELS, Charge, Model, PlanTerms, Tier

AGGREGATIONS = ("count", "sum", "max", "unique_count", "latest")
# Column sizes of plans.models (prices and quantities).
PRICE_DIGITS, PRICE_PLACES = 24, 10
QUANTITY_DIGITS, QUANTITY_PLACES = 30, 6
CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CatalogError(Exception):
    """The file is not a valid catalog; nothing was written."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True)
class MetricSpec:
    code: str
    name: str
    aggregation: str
    properties: tuple[str, ...] = ()
    unique_property: str | None = None
    description: str = ""
    personal: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSpec:
    code: str
    name: str
    metric: str | None = None
    on_unavailable: str = "deny"
    description: str = ""


@dataclass(frozen=True)
class EntitlementSpec:
    feature: str
    enabled: bool = True
    limit: Decimal | None = None
    overage: str = "block"


@dataclass(frozen=True)
class PlanSpec:
    code: str
    name: str
    interval: str
    currency: str
    base_fee: Decimal
    trial_days: int
    charges: tuple[Charge, ...] = ()
    entitlements: tuple[EntitlementSpec, ...] = ()
    description: str = ""

    def terms(self) -> PlanTerms:
        return PlanTerms(self.code, self.name, self.interval, self.currency, self.base_fee, self.charges)

    def content_hash(self) -> str:
        """Identity of what the plan sells and charges (not its name): equal hash, same version."""
        return hashlib.sha256(json.dumps(version_document(self), sort_keys=True).encode()).hexdigest()


@dataclass
class CatalogSpec:
    currency: str = "USD"
    metrics: list[MetricSpec] = field(default_factory=list)
    features: list[FeatureSpec] = field(default_factory=list)
    plans: list[PlanSpec] = field(default_factory=list)


# ------------------------------------------------------------------ loading files
class _DecimalLoader(yaml.SafeLoader):
    """YAML with exact numbers: `0.1` becomes Decimal("0.1"), never a float."""


def _exact_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    return Decimal(text) if text.lower().lstrip("+-") not in (".inf", ".nan") else Decimal("NaN")


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _exact_decimal)


def load_document(text: str, *, name: str = "") -> Any:
    """YAML or JSON (by extension, else by content) with every number exact."""
    is_json = name.endswith(".json") or (not name.endswith((".yaml", ".yml")) and text.lstrip()[:1] in "[{")
    try:
        if is_json:
            return json.loads(text, parse_float=Decimal)
        return yaml.load(text, Loader=_DecimalLoader)  # noqa: S506  SafeLoader subclass
    except (ValueError, yaml.YAMLError) as exc:
        raise CatalogError([Problem("(file)", f"not valid {'JSON' if is_json else 'YAML'}: {exc}")]) from exc


def load_file(path: Path) -> Any:
    return load_document(path.read_text(encoding="utf-8"), name=path.name)


# ------------------------------------------------------------------ parsing
class _Reader:
    """Reads one mapping, recording a problem for each bad or unknown key."""

    def __init__(self, problems: list[Problem], path: str, data: Any, allowed: tuple[str, ...]):
        self.problems, self.path = problems, path
        self.ok = isinstance(data, Mapping)
        self.data: Mapping[str, Any] = data if self.ok else {}
        if not self.ok:
            self.fail("", "must be a mapping")
            return
        for key in self.data:
            if key not in allowed:
                self.fail(f".{key}", f"unknown key (expected one of: {', '.join(allowed)})")

    def fail(self, suffix: str, message: str) -> None:
        self.problems.append(Problem(self.path + suffix, message))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def text(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(f".{key}", "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.fail(f".{key}", "must be a non-empty string")
            return default
        return value.strip()

    def code(self, key: str = "code") -> str:
        value = self.text(key)
        if value and not CODE.match(value):
            self.fail(f".{key}", "must be lower-case letters, digits, '_' or '-' (at most 100)")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            self.fail(f".{key}", f"must be one of: {', '.join(choices)}")
            return default
        return str(value)

    def decimal(
        self,
        key: str,
        *,
        required: bool = False,
        default: Decimal | None = None,
        positive: bool = False,
        price: bool = False,
    ) -> Decimal | None:
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(f".{key}", "is required")
            return default
        value = self.data[key]
        number: Decimal | None = None
        if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool):
            try:
                number = Decimal(str(value).strip())
            except ArithmeticError:
                number = None
        if number is None or not number.is_finite():
            self.fail(f".{key}", 'must be a decimal number, e.g. "0.00002"')
            return default
        if number < 0 or (positive and number == 0):
            self.fail(f".{key}", "must be positive" if positive else "must not be negative")
            return default
        # The columns that will hold it (prices 24 digits with 10 decimals, quantities 30
        # with 6): PostgreSQL would round anything finer without a word.
        places, digits = (PRICE_PLACES, PRICE_DIGITS) if price else (QUANTITY_PLACES, QUANTITY_DIGITS)
        exponent = number.normalize().as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
        if decimals > places:
            self.fail(f".{key}", f"has more than {places} decimals")
            return default
        if number.adjusted() >= digits - places:
            self.fail(f".{key}", f"is too large (at most {digits - places} digits before the point)")
            return default
        return number

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(f".{key}", "must be a whole number ≥ 0")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f".{key}", "must be true or false")
            return default
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f".{key}", "must be a list")
            return []
        return value


def _unique(problems: list[Problem], path: str, codes: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, code in enumerate(codes):
        if code and code in seen:
            problems.append(Problem(f"{path}[{i}].{what}", f"duplicate {what} {code!r}"))
        seen.add(code)


def parse_catalog(
    doc: Any,
    *,
    known_metrics: Mapping[str, MetricSpec] | None = None,
    known_features: Mapping[str, FeatureSpec] | None = None,
) -> tuple[CatalogSpec, list[Problem]]:
    """Every problem of the document, with its path. `known_*` are catalog entries
    already in the database, which the file may reference without repeating."""
    problems: list[Problem] = []
    spec = CatalogSpec()
    top = _Reader(problems, "", doc, ("currency", "features", "metrics", "plans"))
    if not top.ok:
        return spec, [Problem("(file)", "the catalog must be a mapping with features, metrics and plans")]
    spec.currency = _currency(top, "currency", "USD", path="currency")

    for i, raw in enumerate(top.items("metrics")):
        r = _Reader(
            problems,
            f"metrics[{i}]",
            raw,
            ("code", "name", "aggregation", "properties", "unique_property", "description", "personal"),
        )
        if not r.ok:
            continue
        properties = tuple(str(p) for p in r.items("properties"))
        for j, prop in enumerate(r.items("properties")):
            if not isinstance(prop, str) or not CODE.match(prop):
                r.fail(f".properties[{j}]", "must be a property key (lower-case letters, digits, '_')")
        if len(set(properties)) != len(properties):
            r.fail(".properties", "lists a key twice")
        aggregation = r.choice("aggregation", AGGREGATIONS, "sum")
        if "aggregation" not in r.data:
            r.fail(".aggregation", "is required")
        unique_property = r.text("unique_property", required=False) or None
        if aggregation == "unique_count" and unique_property is None:
            r.fail(".unique_property", "is required for unique_count")
        if unique_property is not None and aggregation != "unique_count":
            r.fail(".unique_property", "only applies to unique_count")
        if unique_property is not None and unique_property not in properties:
            r.fail(".unique_property", f"{unique_property!r} must be one of the metric's properties")
        personal = tuple(str(p) for p in r.items("personal"))
        for j, prop in enumerate(personal):
            if prop not in properties:
                r.fail(f".personal[{j}]", f"{prop!r} must be one of the metric's properties")
        if len(set(personal)) != len(personal):
            r.fail(".personal", "lists a key twice")
        spec.metrics.append(
            MetricSpec(
                r.code(),
                r.text("name"),
                aggregation,
                properties,
                unique_property,
                r.text("description", required=False),
                tuple(sorted(set(personal))),
            )
        )
    _unique(problems, "metrics", [m.code for m in spec.metrics], "code")
    metrics = {**(known_metrics or {}), **{m.code: m for m in spec.metrics}}

    for i, raw in enumerate(top.items("features")):
        r = _Reader(problems, f"features[{i}]", raw, ("code", "name", "metric", "on_unavailable", "description"))
        if not r.ok:
            continue
        metric = r.text("metric", required=False) or None
        if metric is not None and metric not in metrics:
            r.fail(".metric", f"unknown metric {metric!r}")
        spec.features.append(
            FeatureSpec(
                r.code(),
                r.text("name"),
                metric,
                r.choice("on_unavailable", ("allow", "deny"), "deny"),
                r.text("description", required=False),
            )
        )
    _unique(problems, "features", [f.code for f in spec.features], "code")
    features = {**(known_features or {}), **{f.code: f for f in spec.features}}

    for i, raw in enumerate(top.items("plans")):
        plan = _parse_plan(problems, f"plans[{i}]", raw, spec.currency, metrics, features)
        if plan is not None:
            spec.plans.append(plan)
    _unique(problems, "plans", [p.code for p in spec.plans], "code")
    return spec, problems


def _currency(r: _Reader, key: str, default: str, *, path: str) -> str:
    value = r.data.get(key, default)
    code = value.upper() if isinstance(value, str) else ""
    if code not in known_currencies():
        r.fail(f".{key}" if r.path else key, f"{value!r} is not an ISO 4217 currency code")
        return default
    return code


def _parse_plan(
    problems: list[Problem],
    path: str,
    raw: Any,
    default_currency: str,
    metrics: Mapping[str, MetricSpec],
    features: Mapping[str, FeatureSpec],
) -> PlanSpec | None:
    r = _Reader(
        problems,
        path,
        raw,
        (
            "code",
            "name",
            "description",
            "interval",
            "currency",
            "base_fee",
            "trial_days",
            "charges",
            "entitlements",
        ),
    )
    if not r.ok:
        return None
    currency = _currency(r, "currency", default_currency, path=path)
    charges = []
    for j, raw_charge in enumerate(r.items("charges")):
        charge = _parse_charge(problems, f"{path}.charges[{j}]", raw_charge, metrics)
        if charge is not None:
            charges.append(charge)
    _unique(problems, f"{path}.charges", [c.metric for c in charges], "metric")
    charged = {c.metric for c in charges}
    entitlements = []
    for j, raw_ent in enumerate(r.items("entitlements")):
        if isinstance(raw_ent, str):
            raw_ent = {"feature": raw_ent}
        e = _Reader(problems, f"{path}.entitlements[{j}]", raw_ent, ("feature", "enabled", "limit", "overage"))
        if not e.ok:
            continue
        code = e.text("feature")
        feature = features.get(code)
        if code and feature is None:
            e.fail(".feature", f"unknown feature {code!r}")
        limit = e.decimal("limit")
        overage = e.choice("overage", ("block", "bill"), "block")
        if feature is not None and feature.metric is None and (limit is not None or "overage" in e.data):
            e.fail(".limit" if limit is not None else ".overage", "only metered features have limits")
        # (an unknown metric is reported where it is named, not again here)
        if overage == "bill" and feature is not None and feature.metric in metrics and feature.metric not in charged:
            e.fail(".overage", f"'bill' needs a charge on metric {feature.metric!r} in this plan")
        entitlements.append(EntitlementSpec(code, e.boolean("enabled", True), limit, overage))
    _unique(problems, f"{path}.entitlements", [e.feature for e in entitlements], "feature")
    base_fee = r.decimal("base_fee", default=Decimal(0), price=True) or Decimal(0)
    if currency in known_currencies() and base_fee != base_fee.quantize(
        Decimal(1).scaleb(-currency_exponent(currency))
    ):
        r.fail(".base_fee", f"has more decimals than {currency} has minor units")
    return PlanSpec(
        code=r.code(),
        name=r.text("name"),
        interval=r.choice("interval", ("month", "year"), "month"),
        currency=currency,
        base_fee=base_fee,
        trial_days=r.integer("trial_days", 0),
        charges=tuple(charges),
        entitlements=tuple(entitlements),
        description=r.text("description", required=False),
    )


_CHARGE_KEYS: dict[str, tuple[str, ...]] = {
    "per_unit": ("unit_price",),
    "package": ("package_size", "package_price", "free_units"),
    "graduated": ("tiers",),
    "volume": ("tiers",),
}


def _parse_charge(problems: list[Problem], path: str, raw: Any, metrics: Mapping[str, MetricSpec]) -> Charge | None:
    keys = ("metric", "model", "unit_price", "package_size", "package_price", "free_units", "tiers")
    r = _Reader(problems, path, raw, keys)
    if not r.ok:
        return None
    metric = r.text("metric")
    if metric and metric not in metrics:
        r.fail(".metric", f"unknown metric {metric!r}")
    if "model" not in r.data:
        r.fail(".model", "is required")
    model = r.choice("model", MODELS, "per_unit")
    for key in keys[2:]:
        if key in r.data and key not in _CHARGE_KEYS[model]:
            r.fail(f".{key}", f"does not apply to the {model} model")
    if model == "per_unit":
        return Charge(metric, "per_unit", unit_price=r.decimal("unit_price", required=True, price=True))
    if model == "package":
        return Charge(
            metric,
            "package",
            package_size=r.decimal("package_size", required=True, positive=True),
            package_price=r.decimal("package_price", required=True, price=True),
            free_units=r.decimal("free_units", default=Decimal(0)) or Decimal(0),
        )
    tiers = _parse_tiers(problems, f"{path}.tiers", r)
    return Charge(metric, cast(Model, model), tiers=tiers)


def _parse_tiers(problems: list[Problem], path: str, r: _Reader) -> tuple[Tier, ...]:
    raw_tiers = r.items("tiers")
    if not raw_tiers:
        if "tiers" not in r.data or r.data["tiers"] == []:
            problems.append(Problem(path, "at least one tier is required"))
        return ()
    tiers = []
    for k, raw in enumerate(raw_tiers):
        t = _Reader(problems, f"{path}[{k}]", raw, ("up_to", "unit_price", "flat_fee"))
        if not t.ok:
            continue
        if "up_to" not in t.data:
            t.fail(".up_to", "is required (null on the last tier)")
        up_to = t.decimal("up_to", positive=True)
        tiers.append(
            Tier(
                up_to,
                t.decimal("unit_price", required=True, price=True) or Decimal(0),
                t.decimal("flat_fee", default=Decimal(0), price=True) or Decimal(0),
            )
        )
    bounds = [tier.up_to for tier in tiers]
    if bounds and bounds[-1] is not None:
        problems.append(Problem(path, "the last tier must be open (up_to: null)"))
    if None in bounds[:-1]:
        problems.append(Problem(path, "only the last tier may be open (up_to: null)"))
    finite = [b for b in bounds if b is not None]
    if any(a >= b for a, b in zip(finite, finite[1:], strict=False)):
        problems.append(Problem(path, "up_to must increase from tier to tier"))
    return tuple(tiers)


# ------------------------------------------------------------------ writing
def _dec(value: Decimal | None, places: int = 0) -> str | None:
    return None if value is None else format_decimal(value, places)


def version_document(plan: PlanSpec) -> dict[str, Any]:
    """The versioned part of a plan, in file form (also hashed to detect change)."""
    places = currency_exponent(plan.currency)
    charges = []
    for c in plan.charges:
        doc: dict[str, Any] = {"metric": c.metric, "model": c.model}
        if c.model == "per_unit":
            doc["unit_price"] = _dec(c.unit_price, places)
        elif c.model == "package":
            doc.update(
                package_size=_dec(c.package_size),
                package_price=_dec(c.package_price, places),
                free_units=_dec(c.free_units),
            )
        else:
            doc["tiers"] = [
                {
                    "up_to": _dec(t.up_to),
                    "unit_price": _dec(t.unit_price, places),
                    "flat_fee": _dec(t.flat_fee, places),
                }
                for t in c.tiers
            ]
        charges.append(doc)
    entitlements = []
    for e in sorted(plan.entitlements, key=lambda e: e.feature):
        ent: dict[str, Any] = {"feature": e.feature}
        if not e.enabled:
            ent["enabled"] = False
        if e.limit is not None:
            ent["limit"] = _dec(e.limit)
        if e.limit is not None or e.overage != "block":
            ent["overage"] = e.overage
        entitlements.append(ent)
    return {
        "interval": plan.interval,
        "currency": plan.currency,
        "base_fee": _dec(plan.base_fee, places),
        "trial_days": plan.trial_days,
        "charges": charges,
        "entitlements": entitlements,
    }


def catalog_document(spec: CatalogSpec) -> dict[str, Any]:
    def metric(m: MetricSpec) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "code": m.code,
            "name": m.name,
            "aggregation": m.aggregation,
            "properties": list(m.properties),
        }
        if m.unique_property:
            doc["unique_property"] = m.unique_property
        if m.description:
            doc["description"] = m.description
        if m.personal:
            doc["personal"] = list(m.personal)
        return doc

    def feature(f: FeatureSpec) -> dict[str, Any]:
        doc: dict[str, Any] = {"code": f.code, "name": f.name}
        if f.metric:
            doc["metric"] = f.metric
        doc["on_unavailable"] = f.on_unavailable
        if f.description:
            doc["description"] = f.description
        return doc

    def plan(p: PlanSpec) -> dict[str, Any]:
        doc: dict[str, Any] = {"code": p.code, "name": p.name}
        if p.description:
            doc["description"] = p.description
        return {**doc, **version_document(p)}

    return {
        "currency": spec.currency,
        "features": [feature(f) for f in spec.features],
        "metrics": [metric(m) for m in spec.metrics],
        "plans": [plan(p) for p in spec.plans],
    }


def dump_document(doc: Mapping[str, Any], fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=100)
