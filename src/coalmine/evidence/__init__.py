"""Evidence: receipts of every promotion and rollback."""
