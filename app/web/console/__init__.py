"""The web console under ``/console``: server-rendered pages over the same functions as the CLI.

Nothing here is imported at daemon start: the composition root mounts a lazy route that
imports :mod:`app.web.console.app` (and Jinja2) on the first request to ``/console``.
This package must stay empty of imports for that reason.
"""
