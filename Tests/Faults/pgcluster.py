"""A throwaway PostgreSQL cluster the fault tests control: stopped and started under a
running hub, or left down while a hub starts.

It is made like the hub's embedded cluster (Sources/HubStorage/EmbeddedPostgres.swift):
initdb with the distribution's server binaries, a `hub` superuser with trust
authentication, listening only on a Unix socket inside the cluster folder. Run as root,
the server runs as the `postgres` system user, since PostgreSQL refuses to run as root.
`track_commit_timestamp` is on, so a test can read when each row was committed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from typing import List, Optional


def pg_bin_dir() -> str:
    env = os.environ.get("HUB_PG_BIN")
    if env and os.path.exists(os.path.join(env, "initdb")):
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (or $HUB_PG_BIN)")
    return os.path.dirname(found[-1])


class PgCluster:
    """``start()``/``stop()`` (fast shutdown) a private cluster; ``url`` is a libpq string."""

    def __init__(self, port: int = 5432) -> None:
        self.bin = pg_bin_dir()
        self.root = tempfile.mkdtemp(prefix="hub-pg-")  # short: the socket path must stay < 108 bytes
        os.chmod(self.root, 0o755)
        self.dir = os.path.join(self.root, "pg")
        self.port = port
        self.run_as = None
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
                self.run_as = "postgres"
            except KeyError:
                self.run_as = "nobody"
        os.mkdir(self.dir, 0o700)
        if self.run_as:
            shutil.chown(self.dir, self.run_as)
        self._pg("initdb", "-D", self.dir, "-U", "hub", "-A", "trust", "-E", "UTF8", "--no-locale",
                 "--no-instructions")
        self.start()
        self.psql("CREATE DATABASE hub", db="postgres")

    @property
    def url(self) -> str:
        return f"host={self.dir} port={self.port} dbname=hub user=hub connect_timeout=5"

    def start(self) -> None:
        options = (f"-c listen_addresses='' -k {self.dir} -p {self.port} -c track_commit_timestamp=on "
                   "-c max_connections=50")
        self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", self.dir, "-l", os.path.join(self.dir, "server.log"),
                 "-o", options)

    def stop(self) -> None:
        """Fast shutdown: open transactions roll back, sessions are cut, committed data stays."""
        self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.dir)

    @property
    def running(self) -> bool:
        return self.pid() is not None

    def pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.dir, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def psql(self, sql: str, db: str = "hub", timeout: float = 60) -> List[str]:
        done = subprocess.run(
            ["psql", "-X", "-h", self.dir, "-p", str(self.port), "-U", "hub", "-d", db, "-v", "ON_ERROR_STOP=1",
             "-Atc", sql], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.splitlines()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # fast shutdown
            deadline = time.monotonic() + 30
            while self.pid() == pid and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg(self, tool: str, *args: str) -> str:
        argv = [os.path.join(self.bin, tool), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--"] + argv
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log_tail()}")
        return done.stdout
