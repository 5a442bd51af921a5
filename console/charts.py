"""Charts drawn on the server as inline SVG, and amounts as finance reads them.

No JavaScript and nothing from elsewhere: the admin's Content-Security-Policy allows no
inline script, and a chart is only bars, lines and text. Colours are the admin's own CSS
variables (so dark mode follows). Every bar carries a <title>: hovering shows the exact
figure. Coordinates are floats; the figures they draw stay Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from billing_project.money import Money, exponent, round_line

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def amount(value: Decimal, currency: str) -> str:
    """An amount at the currency's precision with thousands separators: 24,000.00; 75,000 (JPY)."""
    places = exponent(currency)
    return f"{round_line(value, currency):,.{places}f}"


def money(value: Money) -> str:
    """`amount` followed by the currency: 24,000.00 USD."""
    return f"{amount(value.amount, value.currency)} {value.currency}"


def quantity(value: Decimal) -> str:
    """A usage quantity with thousands separators, decimals only where it has them."""
    text = f"{value.normalize():f}"
    whole, _, frac = text.partition(".")
    grouped = f"{int(whole):,}" if whole.lstrip("-").isdigit() else whole
    return f"{grouped}.{frac}" if frac else grouped


def _compact(value: Decimal) -> str:
    """An axis label: 1.5k, 20k, 1.2M."""
    for limit, suffix in ((Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 3, "k")):
        if abs(value) >= limit:
            scaled = (value / limit).quantize(Decimal("0.1"))
            return f"{scaled.normalize():f}{suffix}"
    return f"{value.normalize():f}"


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `value` (the top of an axis); 1 for 0."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** value.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if value <= step * power:
            return step * power
    return Decimal(10) * power  # pragma: no cover - the loop ends at 10 × power


def month_label(month: date) -> str:
    return f"{MONTHS[month.month - 1]} {month.year % 100:02d}"


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    values: Sequence[Decimal],
    tooltips: Sequence[str],
    width: int = 720,
    height: int = 220,
    highlight_last: bool = False,
    label_every: int = 1,
) -> SafeString:
    """A bar chart with a labelled y axis (0, half, top) and the `labels` under the bars
    (every `label_every`-th). `highlight_last` draws the last bar paler: a period so far."""
    left, right, top, bottom = 64, 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max(values, default=Decimal(0)))
    slot = plot_w / max(len(values), 1)
    bar_w = max(slot * 0.7, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="console-chart" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        y = top + plot_h - float(fraction) * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            'style="stroke: var(--hairline-color, #ddd); stroke-width: 1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'style="fill: var(--body-quiet-color, #666); font-size: 11px">{escape(_compact(peak * fraction))}</text>'
        )
    for index, (label, value, tooltip) in enumerate(zip(labels, values, tooltips, strict=True)):
        x = left + index * slot + (slot - bar_w) / 2
        h = float(value / peak) * plot_h if value > 0 else 0.0
        paler = highlight_last and index == len(values) - 1
        fill = "var(--secondary, #417690)" if paler else "var(--primary, #79aec8)"
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'style="fill: {fill}{"; opacity: 0.55" if paler else ""}"><title>{escape(tooltip)}</title></rect>'
        )
        last = len(values) - 1
        if (index % label_every == 0 and last - index >= label_every / 2) or index == last:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                f'style="fill: var(--body-quiet-color, #666); font-size: 11px">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  every text in it is escaped above


def revenue_chart(*, currency: str, months: Sequence[tuple[date, Money]]) -> SafeString:
    """Invoiced per month in one currency (the current month so far, paler)."""
    return bar_chart(
        title=f"Invoiced per month, {currency}",
        labels=[month_label(m) for m, _ in months],
        values=[v.amount for _, v in months],
        tooltips=[f"{month_label(m)}: {money(v)}" for m, v in months],
        highlight_last=True,
    )


def usage_chart(*, name: str, days: Sequence[tuple[date, Decimal]]) -> SafeString:
    """Usage of one metric per day (today so far, paler)."""
    return bar_chart(
        title=f"{name} per day",
        labels=[f"{d:%d %b}" for d, _ in days],
        values=[v for _, v in days],
        tooltips=[f"{d:%a %d %b %Y}: {quantity(v)}" for d, v in days],
        width=480,
        height=160,
        highlight_last=True,
        label_every=7,
    )
