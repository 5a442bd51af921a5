"""Tenants (the billed accounts) and their subscriptions' lifecycle."""
