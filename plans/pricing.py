"""The pricing engine: pure functions, no ORM (CATALOG.md, "Pricing models").

For a period quantity q:
* per_unit:   q × unit_price
* package:    ceil(max(q − free_units, 0) / package_size) × package_price
* graduated:  each tier prices only the units that fall in it, plus that tier's
              flat_fee once the tier is reached
* volume:     all q units at the unit price of the tier q falls in, plus that tier's flat_fee

Tier bounds are inclusive upper bounds (`up_to`); the last tier is open (None).
A tier is *reached* when some of q falls in it (q above its lower bound), so a
period with no usage costs nothing under every model.

Amounts come back unrounded per tier and rounded once per line (`ChargePrice.amount`),
half away from zero, to the currency's minor unit (billing_project.money).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Literal

from billing_project.money import CONTEXT, round_line

ZERO = Decimal(0)
Model = Literal["per_unit", "package", "graduated", "volume"]
MODELS: tuple[Model, ...] = ("per_unit", "package", "graduated", "volume")


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive; None = no upper bound (last tier only)
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclass(frozen=True)
class Charge:
    metric: str
    model: Model
    unit_price: Decimal | None = None  # per_unit
    package_size: Decimal | None = None  # package
    package_price: Decimal | None = None  # package
    free_units: Decimal = ZERO  # package
    tiers: tuple[Tier, ...] = ()  # graduated, volume


@dataclass(frozen=True)
class TierPrice:
    """One tier's share of a line, for the invoice's breakdown."""

    from_: Decimal  # exclusive lower bound (the previous tier's up_to, 0 for the first)
    to: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal  # unrounded: the line is rounded once, not each tier


@dataclass(frozen=True)
class ChargePrice:
    quantity: Decimal
    raw_amount: Decimal
    amount: Decimal  # rounded once to the minor unit
    tiers: tuple[TierPrice, ...] = ()
    packages: Decimal | None = None


def _bounds(tiers: Sequence[Tier]) -> list[tuple[Decimal, Decimal | None, Tier]]:
    lower = ZERO
    out = []
    for tier in tiers:
        out.append((lower, tier.up_to, tier))
        if tier.up_to is not None:
            lower = tier.up_to
    return out


def graduated(tiers: Sequence[Tier], quantity: Decimal) -> tuple[Decimal, tuple[TierPrice, ...]]:
    pieces = []
    for lower, upper, tier in _bounds(tiers):
        if quantity <= lower:
            break
        units = (quantity if upper is None else min(quantity, upper)) - lower
        amount = CONTEXT.add(CONTEXT.multiply(units, tier.unit_price), tier.flat_fee)
        pieces.append(TierPrice(lower, upper, units, tier.unit_price, tier.flat_fee, amount))
    return sum((p.amount for p in pieces), ZERO), tuple(pieces)


def tier_for(tiers: Sequence[Tier], quantity: Decimal) -> tuple[Decimal, Decimal | None, Tier] | None:
    """The tier `quantity` falls in (lower < q ≤ up_to), or None for q = 0."""
    if quantity <= 0:
        return None
    for lower, upper, tier in _bounds(tiers):
        if upper is None or quantity <= upper:
            return lower, upper, tier
    raise ValueError("tiers must end with an open tier (up_to: null)")


def volume(tiers: Sequence[Tier], quantity: Decimal) -> tuple[Decimal, tuple[TierPrice, ...]]:
    found = tier_for(tiers, quantity)
    if found is None:
        return ZERO, ()
    lower, upper, tier = found
    amount = CONTEXT.add(CONTEXT.multiply(quantity, tier.unit_price), tier.flat_fee)
    return amount, (TierPrice(lower, upper, quantity, tier.unit_price, tier.flat_fee, amount),)


def packages(charge: Charge, quantity: Decimal) -> Decimal:
    if charge.package_size is None or charge.package_size <= 0:
        raise ValueError("a package charge needs a positive package_size")
    billable = max(quantity - charge.free_units, ZERO)
    return (billable / charge.package_size).to_integral_value(rounding=ROUND_CEILING, context=CONTEXT)


def price(charge: Charge, quantity: Decimal, currency: str) -> ChargePrice:
    """The amount of one charge for a period quantity, with its tier breakdown."""
    # Every step (differences, sums, divisions) in the wide context, not Python's 28 digits.
    with localcontext(CONTEXT):
        return _price(charge, quantity, currency)


def _price(charge: Charge, quantity: Decimal, currency: str) -> ChargePrice:
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    if charge.model == "per_unit":
        if charge.unit_price is None:
            raise ValueError("a per_unit charge needs a unit_price")
        raw = CONTEXT.multiply(quantity, charge.unit_price)
        return ChargePrice(quantity, raw, round_line(raw, currency))
    if charge.model == "package":
        if charge.package_price is None:
            raise ValueError("a package charge needs a package_price")
        count = packages(charge, quantity)
        raw = CONTEXT.multiply(count, charge.package_price)
        return ChargePrice(quantity, raw, round_line(raw, currency), packages=count)
    if charge.model == "graduated":
        raw, pieces = graduated(charge.tiers, quantity)
    elif charge.model == "volume":
        raw, pieces = volume(charge.tiers, quantity)
    else:
        raise ValueError(f"unknown pricing model {charge.model!r}")
    return ChargePrice(quantity, raw, round_line(raw, currency), tiers=pieces)


@dataclass(frozen=True)
class PlanTerms:
    """What a plan version charges, as the pricing engine needs it."""

    code: str
    name: str
    interval: str
    currency: str
    base_fee: Decimal
    charges: tuple[Charge, ...] = ()


@dataclass(frozen=True)
class EstimateLine:
    description: str
    metric: str | None
    quantity: Decimal
    amount: Decimal
    model: str | None = None
    unit_price: Decimal | None = None
    packages: Decimal | None = None
    tiers: tuple[TierPrice, ...] = ()


@dataclass(frozen=True)
class Estimate:
    plan: str
    currency: str
    lines: tuple[EstimateLine, ...]
    total: Decimal
    unpriced_metrics: tuple[str, ...] = field(default=())


def estimate(terms: PlanTerms, usage: Mapping[str, Decimal]) -> Estimate:
    """One period of a plan for the given usage: the base fee line, one line per
    charge (rounded once each), and a total that is exactly their sum."""
    lines = [
        EstimateLine(
            description=f"{terms.name} base fee ({'monthly' if terms.interval == 'month' else 'yearly'})",
            metric=None,
            quantity=Decimal(1),
            amount=round_line(terms.base_fee, terms.currency),
        )
    ]
    for charge in terms.charges:
        quantity = usage.get(charge.metric, ZERO)
        priced = price(charge, quantity, terms.currency)
        lines.append(
            EstimateLine(
                description=f"{charge.metric} ({charge.model.replace('_', ' ')})",
                metric=charge.metric,
                quantity=quantity,
                amount=priced.amount,
                model=charge.model,
                unit_price=charge.unit_price if charge.model == "per_unit" else None,
                packages=priced.packages,
                tiers=priced.tiers,
            )
        )
    charged = {c.metric for c in terms.charges}
    with localcontext(CONTEXT):
        amount = sum((line.amount for line in lines), ZERO)
    return Estimate(
        plan=terms.code,
        currency=terms.currency,
        lines=tuple(lines),
        total=amount,
        unpriced_metrics=tuple(sorted(set(usage) - charged)),
    )
