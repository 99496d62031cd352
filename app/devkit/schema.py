"""The schema snapshot: what `scripts/schema-snapshot` writes and the migration test compares."""

from __future__ import annotations


def schema_dump(url: str) -> str:
    """The dispatch and vault schemas as ``pg_dump --schema-only`` prints them, normalised
    (no version banner, no per-run restrict tokens) so two dumps of one schema are equal."""
    import subprocess

    from app.devkit.cluster import find_server

    pg_dump = find_server(install=False).bindir / "pg_dump"
    out = subprocess.run([str(pg_dump), "--schema-only", "--no-owner", "--schema=dispatch", "--schema=vault",
                          "--dbname", url], capture_output=True, text=True, check=True).stdout
    keep = [line for line in out.splitlines()
            if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict", "-- Started on", "-- Completed on"))]
    return "\n".join(keep).strip() + "\n"
