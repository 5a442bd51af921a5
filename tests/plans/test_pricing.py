"""The pricing engine: worked examples from other products' documentation, and properties
that hold for every charge and quantity (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from billing_project.money import round_line, to_minor_units
from plans.pricing import Charge, PlanTerms, Tier, estimate, graduated, price, volume

D = Decimal


def tiers(*spec: tuple[str | None, str] | tuple[str | None, str, str]) -> tuple[Tier, ...]:
    return tuple(Tier(D(t[0]) if t[0] is not None else None, D(t[1]), D(t[2]) if len(t) > 2 else D(0)) for t in spec)


# ------------------------------------------------------------------ worked examples
def test_lago_volume_example():
    # getlago.com/docs/guide/plans/charges/charge-models/volume: 65,000 API calls → 65,000 × $0.0006 + $10 = $49
    charge = Charge(
        "api_calls",
        "volume",
        tiers=tiers(
            ("10000", "0.0010", "10"),
            ("50000", "0.0008", "10"),
            ("100000", "0.0006", "10"),
            (None, "0.0004", "10"),
        ),
    )
    result = price(charge, D(65000), "USD")
    assert result.amount == D("49.00")
    (tier,) = result.tiers
    assert (tier.from_, tier.to, tier.unit_price, tier.flat_fee) == (D(50000), D(100000), D("0.0006"), D(10))


def test_lago_package_example():
    # getlago.com/docs/guide/plans/charges/charge-models/package: $5 per 100 units, first 100 free:
    # 201 units → $0 + $5 + $5 = $10
    charge = Charge("api_calls", "package", package_size=D(100), package_price=D(5), free_units=D(100))
    result = price(charge, D(201), "USD")
    assert result.amount == D("10.00")
    assert result.packages == 2


def test_lago_graduated_example():
    # getlago.com/docs/guide/plans/charges/charge-models/graduated: $1 for the first 100 units,
    # $0.50 for the next 100, $0.10 for any additional unit. 250 units → 100 + 50 + 5 = $155
    charge = Charge("api_calls", "graduated", tiers=tiers(("100", "1"), ("200", "0.50"), (None, "0.10")))
    result = price(charge, D(250), "USD")
    assert result.amount == D("155.00")
    assert [t.quantity for t in result.tiers] == [D(100), D(100), D(50)]


def test_autumn_graduated_example():
    # docs.useautumn.com, "Graduated pricing": 1,000 × $0.01 + 9,000 × $0.008 + 5,000 × $0.005 = $107
    charge = Charge("requests", "graduated", tiers=tiers(("1000", "0.01"), ("10000", "0.008"), (None, "0.005")))
    assert price(charge, D(15000), "USD").amount == D("107.00")


def test_zuplo_graduated_and_volume_examples():
    # zuplo.com/docs/articles/monetization/pricing-models: 15,000 units →
    # graduated (1,000 × $0.10) + (9,000 × $0.05) + (5,000 × $0.01) = $600; volume 15,000 × $0.01 = $150
    spec = tiers(("1000", "0.10"), ("10000", "0.05"), (None, "0.01"))
    assert price(Charge("units", "graduated", tiers=spec), D(15000), "USD").amount == D("600.00")
    assert price(Charge("units", "volume", tiers=spec), D(15000), "USD").amount == D("150.00")


def test_zuplo_per_unit_example():
    # zuplo.com/docs/articles/monetization/pricing-models: 100,000 API calls at $0.001 = $100
    assert price(Charge("api_calls", "per_unit", unit_price=D("0.001")), D(100000), "USD").amount == D("100.00")


# ------------------------------------------------------------------ boundaries
VOLUME = tiers(("100", "1.00", "5"), ("200", "0.50", "7"), (None, "0.25", "11"))


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "0"),  # no usage, no charge (no tier is reached)
        ("1", "6.00"),  # 1 × 1.00 + 5
        ("100", "105.00"),  # up_to is inclusive: still tier 1
        ("100.000001", "57.00"),  # just past it: tier 2 for all units, 50.0000005 + 7 → 57.00
        ("200", "107.00"),
        ("201", "61.25"),
    ],
)
def test_volume_at_and_around_tier_boundaries(quantity, expected):
    assert price(Charge("m", "volume", tiers=VOLUME), D(quantity), "USD").amount == D(expected)


@pytest.mark.parametrize(
    ("quantity", "expected", "tiers_reached"),
    [("0", "0", 0), ("100", "105.00", 1), ("101", "112.50", 2), ("200", "162.00", 2), ("201", "173.25", 3)],
)
def test_graduated_at_and_around_tier_boundaries(quantity, expected, tiers_reached):
    result = price(Charge("m", "graduated", tiers=VOLUME), D(quantity), "USD")
    assert result.amount == D(expected)
    assert len(result.tiers) == tiers_reached


@pytest.mark.parametrize(
    ("quantity", "packages"),
    [("0", 0), ("100", 0), ("100.5", 1), ("101", 1), ("200", 1), ("200.0001", 2), ("201", 2), ("300", 2)],
)
def test_package_at_and_around_package_boundaries(quantity, packages):
    charge = Charge("m", "package", package_size=D(100), package_price=D("5"), free_units=D(100))
    result = price(charge, D(quantity), "USD")
    assert result.packages == packages
    assert result.amount == D(packages * 5)


def test_one_rounding_per_line_not_per_tier():
    # Each tier is 0.004 (rounds to 0.00 alone); the line is 0.012 → 0.01.
    charge = Charge("m", "graduated", tiers=tiers(("1", "0.004"), ("2", "0.004"), (None, "0.004")))
    result = price(charge, D(3), "USD")
    assert result.raw_amount == D("0.012")
    assert result.amount == D("0.01")


def test_yen_lines_round_to_whole_yen():
    assert price(Charge("m", "per_unit", unit_price=D("0.5")), D(3), "JPY").amount == D(2)


# ------------------------------------------------------------------ properties
prices = st.decimals(min_value=0, max_value=100, places=6)
quantities = st.decimals(min_value=0, max_value=10**7, places=3)


@st.composite
def tier_sets(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(draw(st.sets(st.decimals(min_value=D("0.001"), max_value=10**6, places=3), min_size=0, max_size=5)))
    ups: list[Decimal | None] = [*bounds, None]
    return tuple(Tier(up, draw(prices), draw(st.decimals(min_value=0, max_value=1000, places=2))) for up in ups)


@given(tier_sets(), quantities, quantities)
def test_graduated_never_decreases_with_quantity(spec, a, b):
    low, high = sorted((a, b))
    assert graduated(spec, low)[0] <= graduated(spec, high)[0]


@given(tier_sets(), quantities)
def test_graduated_is_the_sum_of_its_tier_pieces(spec, q):
    amount, pieces = graduated(spec, q)
    assert amount == sum((p.amount for p in pieces), D(0))
    assert sum((p.quantity for p in pieces), D(0)) == q
    for piece in pieces:
        assert piece.amount == piece.quantity * piece.unit_price + piece.flat_fee
        assert piece.quantity > 0
        if piece.to is not None:
            assert piece.quantity <= piece.to - piece.from_


@given(tier_sets(), quantities)
def test_volume_prices_every_unit_in_the_tier_the_quantity_falls_in(spec, q):
    amount, pieces = volume(spec, q)
    if q == 0:
        assert amount == 0
        assert pieces == ()
        return
    (piece,) = pieces
    assert piece.from_ < q
    assert piece.to is None or q <= piece.to
    assert amount == q * piece.unit_price + piece.flat_fee


@given(
    st.decimals(min_value=D("0.001"), max_value=10**4, places=3),
    prices,
    st.decimals(min_value=0, max_value=10**4, places=3),
    quantities,
)
def test_package_count_is_the_ceiling_of_billable_over_size(size, package_price, free, q):
    charge = Charge("m", "package", package_size=size, package_price=package_price, free_units=free)
    count = price(charge, q, "USD").packages
    assert count is not None
    billable = max(q - free, D(0))
    assert (count - 1) * size < billable <= count * size or (billable == 0 and count == 0)


@given(
    st.lists(st.tuples(tier_sets(), quantities), min_size=1, max_size=6),
    prices,
    st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_an_estimate_total_is_exactly_the_sum_of_its_rounded_lines(charges, base_fee, currency):
    metrics = [f"m{i}" for i in range(len(charges))]
    terms = PlanTerms(
        "p",
        "P",
        "month",
        currency,
        round_line(base_fee, currency),
        tuple(Charge(m, "graduated", tiers=t) for m, (t, _) in zip(metrics, charges, strict=True)),
    )
    usage = {m: q for m, (_, q) in zip(metrics, charges, strict=True)}
    result = estimate(terms, usage)
    # the total, counted independently in whole minor units
    minor = to_minor_units(round_line(base_fee, currency), currency) + sum(
        to_minor_units(price(c, usage[c.metric], currency).amount, currency) for c in terms.charges
    )
    assert to_minor_units(result.total, currency) == minor
    for line in result.lines:
        assert line.amount == round_line(line.amount, currency)
    assert len(result.lines) == len(charges) + 1


@given(tier_sets(), quantities)
def test_line_rounding_is_within_half_a_minor_unit(spec, q):
    result = price(Charge("m", "graduated", tiers=spec), q, "USD")
    assert abs(result.amount - result.raw_amount) <= D("0.005")


def test_huge_quantities_keep_every_digit():
    # 29 significant digits: Python's default context (28) would lose the last package.
    charge = Charge("m", "package", package_size=D(3), package_price=D(1))
    assert price(charge, D("30000000000000000000000000001"), "USD").packages == D("10000000000000000000000000001")
    graduated_charge = Charge("m", "graduated", tiers=tiers(("1", "0"), (None, "1")))
    assert price(graduated_charge, D("100000000000000000000000000000.5"), "USD").amount == D(
        "99999999999999999999999999999.50"
    )


def test_negative_quantity_is_refused():
    with pytest.raises(ValueError, match="negative"):
        price(Charge("m", "per_unit", unit_price=D(1)), D(-1), "USD")


@given(quantities)
def test_per_unit_is_linear(q):
    assume(q < 10**6)
    charge = Charge("m", "per_unit", unit_price=D("0.00002"))
    assert price(charge, q, "USD").raw_amount == q * D("0.00002")
