"""The catalog: features, billable metrics, plans, immutable plan versions, charges and the pricing engine."""
