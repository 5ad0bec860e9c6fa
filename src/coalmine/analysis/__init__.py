"""Analysis: measurement, metric and run semantics, condition expressions, the judge."""
