"""Shared test fixtures."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.alertmanager",
    "tests.fixtures.probe_app",
]
