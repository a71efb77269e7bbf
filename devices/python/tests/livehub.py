"""Runs the real hub binary ($HUB_BIN) with its embedded PostgreSQL in a throwaway folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import List, Optional, Tuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveHub:
    def __init__(self, binary: str, extra_args: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.extra_args = list(extra_args or [])  # more `hub serve` flags (cluster tests)
        self.root = tempfile.mkdtemp(prefix="hub-py-")
        os.chmod(self.root, 0o755)  # the hub runs PostgreSQL as the postgres user
        self.data_dir = os.path.join(self.root, "data")
        os.mkdir(self.data_dir, 0o755)
        os.chmod(self.data_dir, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_token = "py-live-api-token"
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> None:
        """Starts the hub and waits for the banner with its address."""
        self.starts += 1
        out = os.path.join(self.root, f"hub-{self.starts}.out")
        err = open(os.path.join(self.root, f"hub-{self.starts}.err"), "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--host", "127.0.0.1",
             "--api-token", self.api_token] + self.extra_args,
            stdout=open(out, "wb"), stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while self.url not in open(out, encoding="utf-8", errors="replace").read():
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no banner from the hub within {timeout} s:\n{self.logs()}")
            time.sleep(0.05)

    def ensure_running(self) -> None:
        if self.proc is None:
            self.start()

    def kill(self) -> None:
        """SIGKILL: the hub dies at once; its PostgreSQL keeps running."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: the hub stops, and stops its PostgreSQL."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def postgres_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.data_dir, "postgres", "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        """Stops the hub and, should it have left it running, its PostgreSQL; removes the folder."""
        self.stop()
        pid = self.postgres_pid()
        if pid is not None:  # e.g. the hub was killed and not restarted
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            deadline = time.monotonic() + 30
            while self.postgres_pid() == pid and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def add_device(self, device_id: str) -> str:
        out = self._run([self.binary, "devices", "add", device_id, "--data-dir", self.data_dir])
        match = re.search(r"^token: (\S+)", out, re.M)
        assert match, out
        return match.group(1)

    def rest(self, method: str, path: str, body: Optional[dict] = None) -> Tuple[int, dict]:
        """One REST call with the full API token: (status, JSON answer)."""
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def psql(self, sql: str) -> List[str]:
        out = self._run(["psql", "-h", os.path.join(self.data_dir, "postgres"), "-U", "hub", "hub", "-Atc", sql])
        return out.splitlines()

    def logs(self) -> str:
        text = []
        for name in sorted(os.listdir(self.root)):
            if name.startswith("hub-"):
                with open(os.path.join(self.root, name), errors="replace") as f:
                    text.append(f"--- {name}\n{f.read()[-4000:]}")
        return "\n".join(text)

    @staticmethod
    def _run(argv: List[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout
