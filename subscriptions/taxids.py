"""A tenant's tax ID, checked for its country's format (VIES and the like are not reachable
from here: the format only, never whether the number is registered).

VAT numbers of the EU (with their country prefix; Greece's is EL), the UK (GB, and XI for
Northern Ireland), Switzerland (CHE…), Norway (…MVA); a US EIN; any other country: letters,
digits and separators, 4 to 32 characters. Stored normalised: upper case, no spaces, dots
or dashes (but a US EIN keeps its dash, as it is written)."""

from __future__ import annotations

import re

from billing_project.errors import InvalidRequest

_EU_VAT = {
    "AT": r"ATU\d{8}",
    "BE": r"BE[01]\d{9}",
    "BG": r"BG\d{9,10}",
    "CY": r"CY\d{8}[A-Z]",
    "CZ": r"CZ\d{8,10}",
    "DE": r"DE\d{9}",
    "DK": r"DK\d{8}",
    "EE": r"EE\d{9}",
    "GR": r"EL\d{9}",
    "ES": r"ES[A-Z0-9]\d{7}[A-Z0-9]",
    "FI": r"FI\d{8}",
    "FR": r"FR[A-HJ-NP-Z0-9]{2}\d{9}",
    "HR": r"HR\d{11}",
    "HU": r"HU\d{8}",
    "IE": r"IE(\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W])",
    "IT": r"IT\d{11}",
    "LT": r"LT(\d{9}|\d{12})",
    "LU": r"LU\d{8}",
    "LV": r"LV\d{11}",
    "MT": r"MT\d{8}",
    "NL": r"NL\d{9}B\d{2}",
    "PL": r"PL\d{10}",
    "PT": r"PT\d{9}",
    "RO": r"RO\d{2,10}",
    "SE": r"SE\d{10}01",
    "SI": r"SI\d{8}",
    "SK": r"SK\d{10}",
}
_OTHERS = {
    "GB": r"(GB|XI)(\d{9}|\d{12}|GD[0-4]\d{2}|HA[5-9]\d{2})",
    "CH": r"CHE\d{9}(MWST|TVA|IVA)?",
    "LI": r"CHE\d{9}(MWST|TVA|IVA)?|\d{5}",
    "NO": r"(NO)?\d{9}(MVA)?",
    "US": r"\d{2}-\d{7}",
}
PATTERNS = {code: re.compile(pattern, re.ASCII) for code, pattern in {**_EU_VAT, **_OTHERS}.items()}
_ANY = re.compile(r"[A-Z0-9]{4,32}", re.ASCII)
EU = frozenset(_EU_VAT)


def tax_id_clean(value: str | None, country: str) -> str:
    """The tax ID as stored, or InvalidRequest `invalid_tax_id` saying the format expected."""
    raw = (value or "").strip().upper()
    if not raw:
        return ""
    if country == "US":
        digits = re.sub(r"[\s-]", "", raw)
        cleaned = f"{digits[:2]}-{digits[2:]}" if digits.isascii() and digits.isdigit() and len(digits) == 9 else raw
    else:
        cleaned = re.sub(r"[\s.\-]", "", raw)
    pattern = PATTERNS.get(country, _ANY)
    if not pattern.fullmatch(cleaned):
        expected = (
            f"{country}'s format ({PATTERNS[country].pattern})" if country in PATTERNS else "4 to 32 letters and digits"
        )
        where = f" for {country}" if country else " (a tenant without a country takes any format)"
        raise InvalidRequest(
            f"{value!r} is not a tax ID{where}: expected {expected}.",
            code="invalid_tax_id",
            details={"fields": {"tax_id": f"expected {expected}"}},
        )
    return cleaned
