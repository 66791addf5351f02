"""A PostgreSQL server for the tests: TEST_DATABASE_URL when set (CI: a server with trust auth),
else a throwaway cluster made with initdb and pg_ctl when they are installed, its socket in a
temporary folder; else None with the one line that says what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian and Ubuntu install the server's programs outside PATH.
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return str(candidates[0]) if candidates else None


def missing() -> str | None:
    """Why no server can be had, in one line; None when one can."""
    if os.environ.get("TEST_DATABASE_URL", "").strip():
        return None
    if _tool("initdb") is None or _tool("pg_ctl") is None:
        return "no TEST_DATABASE_URL, and no initdb/pg_ctl in PATH or /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        return "no TEST_DATABASE_URL, and initdb refuses to run as root"
    return None


@contextmanager
def postgres_url() -> Iterator[str]:
    """A server URL (see `missing` first)."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    assert initdb is not None and pg_ctl is not None
    with tempfile.TemporaryDirectory(prefix="pg-test-") as folder:
        data, socket = Path(folder) / "data", Path(folder)
        subprocess.run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-k {socket} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@/postgres?host={quote(str(socket))}"
        finally:
            subprocess.run(
                [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
            )


def with_schema(url: str, schema: str, **settings: str) -> str:
    """The URL with `search_path` set to `schema`, and any other server `settings` (asyncpg
    passes unknown query parameters to the server as settings)."""
    parts = urlsplit(url)
    settings = {"search_path": schema, **settings}
    kept = [
        part for part in parts.query.split("&") if part and part.partition("=")[0] not in settings
    ]
    query = "&".join([*kept, *(f"{name}={value}" for name, value in settings.items())])
    return urlunsplit(parts._replace(query=query))


async def create_schema(url: str) -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    return schema


async def drop_schema(url: str, *schemas: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        # A few at a time: each dropped object takes a lock until the end of the transaction.
        for start in range(0, len(schemas), 10):
            batch = ", ".join(schemas[start : start + 10])
            await connection.execute(f"DROP SCHEMA IF EXISTS {batch} CASCADE")
    finally:
        await connection.close()
