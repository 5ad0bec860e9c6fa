"""Shared test fixtures."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.alertmanager",
]
