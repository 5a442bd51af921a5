"""Small helpers for messages people read."""

from __future__ import annotations


def a_status(word: str) -> str:
    """The word with its article: "An open", "An uncollectible", "A paid"."""
    return f"{'An' if word[:1].lower() in 'aeiou' else 'A'} {word}"
