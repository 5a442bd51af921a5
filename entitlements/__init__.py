"""Entitlement evaluation: plan, grants, subscription state and usage."""
