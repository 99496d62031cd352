"""integration-dispatch: the database is the scheduler; this package does the outside work."""

__version__ = "0.1.0"
