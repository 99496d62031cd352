"""The SQL as package data (app.sql): queries.sql is loaded by app.db.queries."""
