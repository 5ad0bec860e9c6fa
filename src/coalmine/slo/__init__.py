"""SLOs and error budgets: the spec (``slos.yaml``, OpenSLO v1), the pure budget and burn-rate
engine, the budget-driven release policy, bucket ingestion and the evaluator. See docs/slo.md."""
