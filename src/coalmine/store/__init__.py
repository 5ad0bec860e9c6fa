"""Persistence: SQLAlchemy models, Alembic migrations, SQLite (default) or PostgreSQL."""
