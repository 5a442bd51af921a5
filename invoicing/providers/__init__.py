"""The payment-provider adapter: the only package that imports `stripe` or `djstripe`
(an import-linter contract run by the tests enforces it)."""
