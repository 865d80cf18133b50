"""A real PostgreSQL for tests: ``initdb`` and ``pg_ctl`` on a private data
folder and a loopback port, run as a non-root user (PostgreSQL refuses root).

>>> pg = Postgres.start()          # None when PostgreSQL is not installed
>>> url = pg.create_database("t1") # postgresql+psycopg://...
>>> pg.stop()
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from fleetcore.testing.services import free_port, wait_for_port

USER = "postgres"


def binaries() -> Path | None:
    """The folder with ``initdb``/``pg_ctl``: Debian keeps them off PATH."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


class Postgres:
    def __init__(self, root: Path, port: int, bindir: Path, as_user: str | None) -> None:
        self.root = root
        self.port = port
        self.bindir = bindir
        self.as_user = as_user
        self.data = root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=self.root)

    @classmethod
    def start(cls) -> Postgres | None:
        bindir = binaries()
        if bindir is None:
            return None
        as_user = None
        root = Path(tempfile.mkdtemp(prefix="fleetcore-pg-"))
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(USER)
            except KeyError:
                return None
            as_user = USER
            os.chown(root, entry.pw_uid, entry.pw_gid)
        pg = cls(root, free_port(), bindir, as_user)
        pg._run("initdb", "-D", str(pg.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        # No fsync: a test database that dies with the machine is fine.
        options = f"-p {pg.port} -h 127.0.0.1 -k {root} -c fsync=off -c max_connections=200"
        pg._run("pg_ctl", "-D", str(pg.data), "-o", options, "-l", str(root / "log"), "-w", "start")
        if not wait_for_port(pg.port, 20):
            pg.stop()
            return None
        return pg

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
