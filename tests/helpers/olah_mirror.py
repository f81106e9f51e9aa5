"""Run olah (a third-party Hub mirror, ``pip install olah``) over local git repositories.

olah serves the Hub's download API (``resolve``, ``api/{type}s/{repo}/revision/{rev}``, ``tree``,
``refs``...) for git repositories found under its ``mirrors-path``; with
``[accessibility] offline = true`` it never contacts huggingface.co.  It has no write
endpoints, so it only checks the download half of the clients against a server that is not ours.

Layout olah expects (olah 0.5.4, ``olah/server_mirror.py``)::

    {mirrors-path}/{models|datasets|spaces}/{namespace}/{name}/   # a normal (non-bare) git work tree
        .git/lfs/objects/{oid[0:2]}/{oid[2:4]}/{oid}                # content of LFS files

An LFS file is committed as its git-lfs pointer (olah recognises pointers by their size, 120 to
150 bytes, and format); git-lfs itself is not needed.  Config written by :class:`OlahMirror`::

    [basic]
    host = "127.0.0.1"
    port = <free port>
    repos-path = "<base>/olah-cache"
    mirrors-path = ["<base>/mirrors"]
    [accessibility]
    offline = true

olah is started as ``python -m olah.server -c <config> --log-path <base>/logs`` in a subprocess,
and :meth:`OlahMirror.start` waits until it answers HTTP.

Usage::

    with OlahMirror(tmp_path) as mirror:
        sha = mirror.add_repo("org/repo", {"config.json": b"{}"}, lfs={"weights.bin": data}, tag="v1")
        path = hf_hub_download("org/repo", "config.json", endpoint=mirror.endpoint, cache_dir=...)
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["OlahMirror", "free_port"]

_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip()


class OlahMirror:
    """olah serving local git repositories, offline, on a free loopback port (a context manager)."""

    def __init__(
        self, base_dir: str | os.PathLike[str], *, host: str = "127.0.0.1", startup_timeout: float = 60
    ) -> None:
        self.base = Path(base_dir)
        self.host = host
        self.port = free_port(host)
        self.startup_timeout = startup_timeout
        self.mirrors = self.base / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        self.config_path = self.base / "olah.toml"
        self.log_path = self.base / "olah.out"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT`` / ``endpoint=``."""
        return f"http://{self.host}:{self.port}"

    # ----------------------------------------------------------------------------------- repos

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        return self.mirrors / f"{repo_type}s" / repo_id

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        lfs: Mapping[str, bytes] | None = None,
        repo_type: str = "model",
        message: str = "Add files",
        tag: str | None = None,
        branch: str = "main",
    ) -> str:
        """Commit ``files`` (and ``lfs`` files, as git-lfs pointers) to the git repo ``repo_id``
        (created on first use) on ``branch``; tag the commit with ``tag``.  Returns the commit sha."""
        if "/" not in repo_id:
            raise ValueError("repo_id must be 'namespace/name'")
        work = self.repo_dir(repo_id, repo_type)
        if not (work / ".git").is_dir():
            work.mkdir(parents=True, exist_ok=True)
            _git(work, "init", "-q", "-b", branch)
        elif _git(work, "rev-parse", "--abbrev-ref", "HEAD") != branch:
            _git(work, "checkout", "-q", "-B", branch)
        for path, data in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if lfs:
            attributes = work / ".gitattributes"
            lines = attributes.read_text().splitlines() if attributes.exists() else []
            for path, data in lfs.items():
                oid = hashlib.sha256(data).hexdigest()
                obj = work / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
                obj.parent.mkdir(parents=True, exist_ok=True)
                obj.write_bytes(data)
                target = work / path
                target.parent.mkdir(parents=True, exist_ok=True)
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
                target.write_text(pointer)
                rule = f"{path} filter=lfs diff=lfs merge=lfs -text"
                if rule not in lines:
                    lines.append(rule)
            attributes.write_text("\n".join(lines) + "\n")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "--allow-empty", "-m", message)
        if tag is not None:
            _git(work, "tag", tag)
        return _git(work, "rev-parse", "HEAD")

    # ----------------------------------------------------------------------------------- process

    def _write_config(self) -> None:
        cache = self.base / "olah-cache"
        cache.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "[basic]\n"
            f'host = "{self.host}"\n'
            f"port = {self.port}\n"
            f'repos-path = "{cache.as_posix()}"\n'
            f'mirrors-path = ["{self.mirrors.as_posix()}"]\n'
            "\n[accessibility]\n"
            "offline = true\n"
        )

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", "/api/whoami-v2")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def start(self) -> OlahMirror:
        """Start olah and wait until it answers (``RuntimeError`` with its log otherwise)."""
        if self._proc is not None:
            return self
        self._write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env["HF_HUB_OFFLINE"] = "0"
        with self.log_path.open("wb") as log:
            command = [sys.executable, "-m", "olah.server", "-c", str(self.config_path)]
            command += ["--log-path", str(self.base / "logs")]
            self._proc = subprocess.Popen(
                command,
                cwd=self.base,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"olah exited with code {code} at startup:\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not answer on {self.endpoint} within {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate olah (kill it after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> OlahMirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
