"""Metric providers: the router's own measurements, Prometheus, web, probes."""
