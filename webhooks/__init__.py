"""Stripe webhook intake and its translation into billing state."""
