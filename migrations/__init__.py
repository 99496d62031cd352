"""The migrations as package data (app.migrations): Alembic reads env.py and versions/ from here."""
