"""The command line: one module per command group, each exporting ``app``."""
