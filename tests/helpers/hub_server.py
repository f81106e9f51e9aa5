"""A small Hugging Face Hub-compatible HTTP server for the tests (standard library only, in a daemon thread).

The public Hub cannot be reached from the test machines, so the tests run the real, unmodified
``huggingface_hub`` / ``transformers`` clients against this server, selected with ``HF_ENDPOINT`` (or
``HfApi(endpoint=...)``). It serves what the tests use, and no more:

* repos (models and datasets), public or private, created and deleted; ``whoami``; bearer tokens mapped to users, a
  user writing to its own namespace (``401`` without a valid token, ``403`` elsewhere, a private repo ``404`` to
  another user);
* commits (the ndjson ``commit`` endpoint: base64 files, LFS files uploaded first through the git-lfs batch API and
  a signed ``PUT``, deleted files and folders; ``412`` for a stale ``parentCommit``), ``preupload`` (LFS from
  10 MiB, for binary samples and for ``.gitattributes`` patterns), ``validate-yaml`` for model cards;
* branches and tags (created and deleted), repo info at a revision, ``tree`` (paginated with ``Link`` headers),
  ``paths-info``, ``refs`` and ``commits``;
* downloads: ``resolve`` by branch, tag or commit (regular files through ``/api/resolve-cache``, LFS files with a
  ``302`` to a signed URL on another origin), byte ranges, and the ``X-Error-Code`` the clients branch on
  (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``);
* fault injection (``fail_next``: an error status, or a dropped connection before or after the request is applied)
  and a record of every request, for the retry and "nothing was sent" tests;
* Xet is not served: clients must run with ``HF_HUB_DISABLE_XET=1`` (``env()`` sets it).

Usage::

    with HubServer() as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        env = hub.env(tmp_path)  # HF_ENDPOINT, HF_TOKEN, fresh HF_HOME/... for a client process
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import mimetypes
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = ["OTHER_TOKEN", "UNSET_ENV_VARS", "HubServer"]

DEFAULT_USER = "user"
DEFAULT_TOKEN = "hf_test_user_token"
OTHER_USER = "other"
OTHER_TOKEN = "hf_test_other_token"

#: Variables a client environment must not inherit (they would make it offline or pick another token).
UNSET_ENV_VARS: tuple[str, ...] = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_ENABLE_HF_TRANSFER",
)

REPO_TYPES: dict[str, str] = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES: dict[str, str] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_BRANCH = "main"
LFS_THRESHOLD = 10 * 1024 * 1024
#: The "CDN" origin of LFS downloads and uploads: the same server under another host name, so that the client
#: treats it as another origin (and sends no token there).
CDN_HOST = "localhost"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1024 * 1024

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)


# --------------------------------------------------------------------------------------------- helpers


def git_blob_oid(data: bytes) -> str:
    """The git object id (sha1) of a blob with content ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def hub_datetime() -> str:
    """Now in the Hub's format, e.g. ``2024-05-01T12:00:00.123Z``."""
    dt = datetime.now(tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_card_metadata(readme: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(metadata, error)`` of the YAML front matter of a model card."""
    import yaml  # a dependency of huggingface_hub

    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", readme, flags=re.DOTALL)
    if match is None:
        return None, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return None, f"Invalid YAML in the model card metadata: {err}"
    return (data if isinstance(data, dict) else {}), None


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit snapshot."""

    sha256: str
    size: int
    git_oid: str  #: git blob sha1 of the content (regular file) or of the LFS pointer (LFS file)
    lfs: bool

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo."""

    oid: str
    parent: str | None
    title: str
    message: str
    authors: tuple[str, ...]
    date: str
    files: Mapping[str, FileEntry]


@dataclass
class Repo:
    """A repository: refs and commits (the blobs live in the shared blob store)."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def resolve(self, rev: str) -> str | None:
        """Commit id of a branch, a tag or a commit id; ``None`` when unknown."""
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        return rev if _COMMIT_RE.match(rev) and rev in self.commits else None

    def history(self, commit_oid: str) -> list[Commit]:
        """The commits reachable from ``commit_oid``, newest first."""
        out: list[Commit] = []
        oid: str | None = commit_oid
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out


@dataclass
class FaultRule:
    """A fault to inject into the next requests matching ``pattern`` (see ``HubServer.fail_next``)."""

    pattern: re.Pattern[str]
    status: int
    times: int
    method: str | None
    disconnect: bool
    when: str
    message: str
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method.upper() == method)
            and self.pattern.search(path) is not None
        )


@dataclass(frozen=True)
class RequestRecord:
    """One request served (for assertions in tests)."""

    method: str
    path: str
    status: int | None  #: ``None`` when the connection was dropped without a response
    user: str | None


class HubError(Exception):
    """An HTTP error answer, in the Hub's format (JSON ``error`` + ``X-Error-*`` headers)."""

    def __init__(self, status: int, message: str, *, error_code: str | None = None,
                 headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_response(self) -> Response:
        headers = dict(self.headers)
        if self.error_code is not None:
            headers["X-Error-Code"] = self.error_code
        # header values must be latin-1: keep them ASCII
        headers["X-Error-Message"] = (
            self.message.replace("\r", " ").replace("\n", " ").encode("ascii", "backslashreplace").decode("ascii")
        )
        return Response.json({"error": self.message, **self.extra}, status=self.status, headers=headers)


def _repo_not_found(user: str | None) -> HubError:
    return HubError(401 if user is None else 404, "Repository not found", error_code="RepoNotFound")


def _revision_not_found(rev: str) -> HubError:
    return HubError(404, f"Invalid rev id: {rev}", error_code="RevisionNotFound")


@dataclass
class Response:
    """An answer: a bytes body, or a slice of a file on disk."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    offset: int = 0
    length: int = 0

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return cls(
            status=status,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @property
    def content_length(self) -> int:
        return self.length if self.file_path is not None else len(self.body)


# --------------------------------------------------------------------------------------------- storage


class BlobStore:
    """Content-addressed blobs (by sha256) under a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha):
            tmp = self.tmp / uuid.uuid4().hex
            tmp.write_bytes(data)
            self.commit_tmp(tmp, sha)
        return sha

    def put_stream(self, chunks: Iterator[bytes]) -> tuple[str, int, Path]:
        """Write ``chunks`` to a temporary file; return ``(sha256, size, tmp_path)``."""
        tmp = self.tmp / uuid.uuid4().hex
        digest = hashlib.sha256()
        size = 0
        with tmp.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return digest.hexdigest(), size, tmp

    def commit_tmp(self, tmp: Path, sha256: str) -> None:
        """Move a temporary file written by ``put_stream`` into the store as ``sha256``."""
        dest = self.path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


# --------------------------------------------------------------------------------------------- request


class Request:
    """A parsed request, with lazy body reading."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.raw_path = split.path
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.segments = [unquote(seg) for seg in split.path.split("/") if seg != ""]
        self.headers = handler.headers
        self.user: str | None = None
        self._body: bytes | None = None
        self._consumed = False

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.arg(name, "") or "").lower() in ("1", "true", "yes")

    def iter_body(self) -> Iterator[bytes]:
        """Stream the request body (``Content-Length``)."""
        if self._consumed:
            return
        self._consumed = True
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.handler.rfile.read(min(remaining, _CHUNK))
            if not data:
                raise ConnectionError("connection closed in the request body")
            remaining -= len(data)
            yield data

    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.iter_body())
        return self._body

    def json(self) -> Any:
        raw = self.body()
        return json.loads(raw) if raw.strip() else {}

    def drain(self, limit: int | None = None) -> None:
        """Consume (up to ``limit`` bytes of) the body so the connection stays usable."""
        read = 0
        for chunk in self.iter_body():
            read += len(chunk)
            if limit is not None and read >= limit:
                break


# --------------------------------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        self.hub = hub
        self.active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self.active.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._active_lock:
            self.active.discard(request)
        super().shutdown_request(request)

    def close_active(self) -> None:
        """Cut the open (keep-alive) connections, so that a stopped server really is down."""
        with self._active_lock:
            sockets = list(self.active)
            self.active.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "hf-test-hub/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        hub = self.server.hub
        req = Request(self)
        rule = hub._take_fault(req.method, req.raw_path)
        if rule is not None and rule.when == "before":
            if rule.disconnect:
                req.drain(limit=64 * 1024)  # an upload cut after its first 64 KiB
                self._drop(req)
            else:
                req.drain()
                self._write(req, HubError(rule.status, rule.message).to_response())
            return
        try:
            try:
                resp = hub._route(req)
            except HubError as err:
                resp = err.to_response()
            req.drain()  # what the route did not read, so that the connection stays usable
        except OSError:  # the client went away
            self.close_connection = True
            hub._record(req, None)
            return
        except Exception as err:  # a server bug: answer 500 with the traceback, keep serving
            traceback.print_exc()
            resp = HubError(500, f"Test Hub server error: {type(err).__name__}: {err}").to_response()
            req.drain()
        if rule is not None:  # when="after": the request is applied, its answer lost
            if rule.disconnect:
                self._drop(req)
                return
            resp = HubError(rule.status, rule.message).to_response()
        self._write(req, resp)

    def _drop(self, req: Request) -> None:
        """Close the connection without any answer."""
        self.server.hub._record(req, None)  # before the client can see the connection close (see _write)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, req: Request, resp: Response) -> None:
        # Recorded before the answer is sent: a client that has its answer may already be gone and the test reading
        # ``requests``, which would otherwise miss this request and count it during its next step.
        self.server.hub._record(req, resp.status)
        headers = {"X-Request-Id": uuid.uuid4().hex, **resp.headers}
        try:
            self.send_response(resp.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(resp.content_length))
            self.end_headers()
            if req.method != "HEAD":
                if resp.file_path is not None:
                    with resp.file_path.open("rb") as src:
                        src.seek(resp.offset)
                        remaining = resp.length
                        while remaining > 0:
                            data = src.read(min(remaining, _CHUNK))
                            if not data:
                                break
                            self.wfile.write(data)
                            remaining -= len(data)
                elif resp.body:
                    self.wfile.write(resp.body)
        except (ConnectionError, OSError):
            self.close_connection = True


class HubServer:
    """A Hub-compatible HTTP server in a background thread (use as a context manager).

    Users: ``"user"`` (token ``self.token``) and ``"other"`` (``OTHER_TOKEN``); ``add_token`` adds tokens.

    Args:
        port: port to bind on 127.0.0.1 (0: a free one).
        page_size: page size of the paginated listings (tree, commits).
    """

    host = "127.0.0.1"

    def __init__(self, *, port: int = 0, page_size: int = 1000) -> None:
        self.tokens: dict[str, str] = {DEFAULT_TOKEN: DEFAULT_USER, OTHER_TOKEN: OTHER_USER}
        self.port = port
        self.page_size = page_size
        self.requests: list[RequestRecord] = []
        self._storage: Path | None = None
        self._secret = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._faults: list[FaultRule] = []
        self._repos: dict[tuple[str, str], Repo] = {}
        self._counter = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._blobs: BlobStore | None = None
        self._repo_seq = 0

    # ----------------------------------------------------------------------------------- lifecycle

    def start(self) -> HubServer:
        """Bind and serve in a daemon thread; return ``self``."""
        self._storage = Path(tempfile.mkdtemp(prefix="hf-test-hub-"))
        self._blobs = BlobStore(self._storage / "blobs")
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="hf-test-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the open connections, and remove the storage."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_active()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- public API

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT`` / ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://{CDN_HOST}:{self.port}"

    @property
    def token(self) -> str:
        """A valid write token for ``user``."""
        return DEFAULT_TOKEN

    @property
    def user(self) -> str:
        return DEFAULT_USER

    def add_token(self, token: str, user: str) -> None:
        """Accept ``token`` as ``user``."""
        with self._lock:
            self.tokens[token] = user

    def new_repo_id(self, prefix: str = "repo", namespace: str | None = None) -> str:
        """A repo id not used yet on this server, e.g. ``user/tiny-3``."""
        with self._lock:
            self._repo_seq += 1
            return f"{namespace or self.user}/{prefix}-{self._repo_seq}"

    def env(self, base_dir: str | os.PathLike[str], *, token: str | None = "") -> dict[str, str]:
        """Environment variables for a client of this server, with fresh empty caches under ``base_dir``.

        ``HF_ENDPOINT``, ``HF_TOKEN`` (``token``; default ``self.token``; ``None``: anonymous), the ``HF_HOME``
        folders, ``HF_HUB_DISABLE_XET=1`` and no telemetry. The variables of ``UNSET_ENV_VARS`` (``HF_HUB_OFFLINE``...)
        must be removed from the inherited environment: ``helpers.hub_clients.client_environ`` does it.
        """
        home = Path(base_dir) / "hf_home"
        for sub in ("hub", "modules", "xet", "assets", "datasets"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = {
            "HF_ENDPOINT": self.endpoint,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_MODULES_CACHE": str(home / "modules"),
            "HF_XET_CACHE": str(home / "xet"),
            "HF_ASSETS_CACHE": str(home / "assets"),
            "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
            "DO_NOT_TRACK": "1",
        }
        tok = self.token if token == "" else token
        if tok is not None:
            env["HF_TOKEN"] = tok
        return env

    def fail_next(self, path_regex: str, status: int = 500, *, times: int = 1, method: str | None = None,
                  disconnect: bool = False, when: str = "before",
                  message: str = "Internal Error - injected fault") -> FaultRule:
        """Make the next ``times`` requests whose path matches ``path_regex`` fail.

        ``status``: the HTTP status to answer (a JSON ``error`` body with ``message``); ``disconnect``: drop the
        connection without answering instead (for a large body, after reading its first 64 KiB: an upload cut
        mid-request). ``when``: ``"before"`` (the request is not applied) or ``"after"`` (it is applied, then its
        answer is replaced or dropped: a lost response). Returns the rule (``rule.hits`` counts uses).
        """
        assert when in ("before", "after"), when
        rule = FaultRule(re.compile(path_regex), status, times, method, disconnect, when, message)
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def _head(self, repo_id: str, revision: str, repo_type: str) -> tuple[Repo, str]:
        repo = self._repos[(repo_type, repo_id)]
        head = repo.resolve(revision)
        if head is None:
            raise KeyError(revision)
        return repo, head

    def commit_ids(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> list[str]:
        """Commit ids reachable from ``revision`` (newest first), read from the store directly."""
        with self._lock:
            repo, head = self._head(repo_id, revision, repo_type)
            return [c.oid for c in repo.history(head)]

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` with their content, read from the store directly."""
        with self._lock:
            repo, head = self._head(repo_id, revision, repo_type)
            entries = dict(repo.commits[head].files)
        return {path: self._blobs.read(entry.sha256) for path, entry in entries.items()}

    def every_commit_file(self, repo_id: str, repo_type: str = "model") -> list[tuple[str, str, bytes]]:
        """``(commit oid, path, content)`` of every file of every commit of ``repo_id``, reachable from a ref or
        not: what anyone can still download from the repo's history."""
        with self._lock:
            commits = list(self._repos[(repo_type, repo_id)].commits.values())
        return [
            (commit.oid, path, self._blobs.read(entry.sha256))
            for commit in commits
            for path, entry in commit.files.items()
        ]

    def stored_blobs(self) -> Iterator[bytes]:
        """The content of every blob this server has stored, for any repo, committed or not."""
        for path in sorted(self._blobs.root.glob("??/*")):
            yield path.read_bytes()

    def is_lfs(self, repo_id: str, path: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> bool:
        """Whether ``path`` is stored as an LFS file at ``revision``."""
        with self._lock:
            repo, head = self._head(repo_id, revision, repo_type)
            return repo.commits[head].files[path].lfs

    # ----------------------------------------------------------------------------------- internals

    def _record(self, req: Request, status: int | None) -> None:
        with self._lock:
            self.requests.append(RequestRecord(req.method, req.raw_path, status, req.user))

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._faults:
                if rule.matches(method, path):
                    rule.times -= 1
                    rule.hits += 1
                    return rule
        return None

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def _check_sig(self, sig: str | None, *parts: str) -> None:
        if not sig or not hmac.compare_digest(sig, self._sign(*parts)):
            raise HubError(403, "Invalid or missing signature in the URL")

    def _new_commit_oid(self, *parts: str) -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
        return hashlib.sha1("\0".join((*parts, str(counter), uuid.uuid4().hex)).encode()).hexdigest()

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and namespace == user

    def _authenticate(self, req: Request) -> None:
        auth = req.headers.get("Authorization")
        if not auth:
            return
        scheme, _, value = auth.partition(" ")
        user = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        req.user = user

    def _require_user(self, req: Request) -> str:
        if req.user is None:
            raise HubError(401, "You must be authenticated to access this endpoint (no token was sent).")
        return req.user

    def _get_repo(self, req: Request, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        if write:
            self._require_user(req)
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._can_write(req.user, repo.namespace)):
            raise _repo_not_found(req.user)
        if write and not self._can_write(req.user, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to {repo_type}s/{repo_id}")
        return repo

    def _resolve(self, repo: Repo, rev: str) -> str:
        with self._lock:
            oid = repo.resolve(rev)
        if oid is None:
            raise _revision_not_found(rev)
        return oid

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"

    def _paginate(self, req: Request, items: list[Any]) -> Response:
        page = int(req.arg("p", "0") or 0)
        chunk = items[page * self.page_size : (page + 1) * self.page_size]
        headers: dict[str, str] = {}
        if (page + 1) * self.page_size < len(items):
            query = {k: v[-1] for k, v in req.query.items()}
            query["p"] = str(page + 1)
            headers["Link"] = f'<{self.endpoint}{req.raw_path}?{urlencode(query)}>; rel="next"'
        return Response.json(chunk, headers=headers)

    # ----------------------------------------------------------------------------------- routing

    def _route(self, req: Request) -> Response:
        seg = req.segments
        method = req.method
        if len(seg) == 3 and seg[0] == "lfs":  # the signed "CDN" URLs: no token
            if seg[1] == "upload" and method == "PUT":
                return self._lfs_put(req, seg[2])
            if seg[1] == "objects" and method in ("GET", "HEAD"):
                return self._lfs_cdn(req, seg[2])
        self._authenticate(req)
        if seg and seg[0] == "api":
            return self._route_api(req, seg[1:], method)
        # file routes: /[datasets/|spaces/]{ns}/{name}/resolve/... and /[datasets/|spaces/]{ns}/{name}.git/info/lfs/objects/...
        repo_type = "model"
        rest = seg
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, rest = REPO_TYPES[seg[0]], seg[1:]
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(req, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"] and method == "POST":
            repo_id = f"{rest[0]}/{rest[1][: -len('.git')]}"
            if rest[5] == "batch":
                return self._lfs_batch(req, repo_type, repo_id)
            if rest[5] == "verify":
                return self._lfs_verify(req, repo_type, repo_id)
        raise HubError(404, f"Not found: {req.method} {req.raw_path}")

    def _route_api(self, req: Request, seg: list[str], method: str) -> Response:
        if seg == ["whoami-v2"] and method == "GET":
            return self._whoami(req)
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo(req)
        if seg == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo(req)
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(req)
        if seg == ["agent-harnesses"] and method == "GET":  # registry fetched by huggingface_hub's user agent
            return Response.json({"standardEnvVars": [], "harnesses": {}})
        if len(seg) >= 6 and seg[0] == "resolve-cache" and seg[1] in REPO_TYPES and method in ("GET", "HEAD"):
            return self._resolve_file(req, REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4], "/".join(seg[5:]))
        if len(seg) >= 3 and seg[0] in REPO_TYPES:
            repo_type = REPO_TYPES[seg[0]]
            repo_id = f"{seg[1]}/{seg[2]}"
            rest = seg[3:]
            action = rest[0] if rest else ""
            if not rest and method == "GET":
                return self._repo_info(req, repo_type, repo_id, None)
            if action == "revision" and len(rest) == 2 and method == "GET":
                return self._repo_info(req, repo_type, repo_id, rest[1])
            if action == "tree" and len(rest) >= 2 and method == "GET":
                return self._tree(req, repo_type, repo_id, rest[1], "/".join(rest[2:]))
            if action == "paths-info" and len(rest) == 2 and method == "POST":
                return self._paths_info(req, repo_type, repo_id, rest[1])
            if action == "refs" and len(rest) == 1 and method == "GET":
                return self._refs(req, repo_type, repo_id)
            if action == "commits" and len(rest) == 2 and method == "GET":
                return self._commits(req, repo_type, repo_id, rest[1])
            if action == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
                return self._branch(req, repo_type, repo_id, rest[1], method)
            if action == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
                return self._tag(req, repo_type, repo_id, rest[1], method)
            if action == "preupload" and len(rest) == 2 and method == "POST":
                return self._preupload(req, repo_type, repo_id, rest[1])
            if action == "commit" and len(rest) == 2 and method == "POST":
                return self._commit(req, repo_type, repo_id, rest[1])
            if action in ("xet-write-token", "xet-read-token"):
                raise HubError(
                    400,
                    "Xet storage is not supported by this test Hub server: set HF_HUB_DISABLE_XET=1 in the "
                    "environment before importing huggingface_hub.",
                )
        raise HubError(404, f"Not found: {req.method} {req.raw_path}")

    # ----------------------------------------------------------------------------------- account / repos

    def _whoami(self, req: Request) -> Response:
        user = self._require_user(req)
        token = req.headers.get("Authorization", "").partition(" ")[2].strip()
        return Response.json({
            "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user, "fullname": user,
            "orgs": [], "auth": {"type": "access_token",
                                 "accessToken": {"displayName": f"test-token-{token[-4:]}", "role": "write"}},
        })

    def _create_repo(self, req: Request) -> Response:
        user = self._require_user(req)
        payload = req.json()
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if not self._can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}")
        visibility = payload.get("visibility")
        private = bool(payload.get("private", False)) if visibility is None else visibility == "private"
        repo_id = f"{namespace}/{payload['name']}"
        url = self._repo_url(repo_type, repo_id)
        gitattributes = DEFAULT_GITATTRIBUTES.encode()
        sha = self._blobs.put_bytes(gitattributes)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            now = hub_datetime()
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=now)
            entry = FileEntry(sha256=sha, size=len(gitattributes), git_oid=git_blob_oid(gitattributes), lfs=False)
            oid = self._new_commit_oid(repo_type, repo_id, "initial commit")
            repo.commits[oid] = Commit(oid, None, "initial commit", "", ("system",), now, {".gitattributes": entry})
            repo.branches[DEFAULT_BRANCH] = oid
            self._repos[(repo_type, repo_id)] = repo
        return Response.json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _delete_repo(self, req: Request) -> Response:
        user = self._require_user(req)
        payload = req.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        self._get_repo(req, repo_type, repo_id, write=True)
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)
        return Response.json({})

    def _validate_yaml(self, req: Request) -> Response:
        _, error = parse_card_metadata(req.json()["content"])
        if error is not None:
            return Response.json({"error": error, "errors": [{"message": error}], "warnings": []}, status=400)
        return Response.json({"errors": [], "warnings": []})

    def _repo_info(self, req: Request, repo_type: str, repo_id: str, rev: str | None) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev if rev is not None else DEFAULT_BRANCH)
        with self._lock:
            commit = repo.commits[oid]
        blobs = req.flag("blobs")
        siblings = []
        for path in sorted(commit.files):
            entry = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling["size"] = entry.size
                sibling["blobId"] = entry.git_oid
                if entry.lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        card: dict[str, Any] | None = None
        if "README.md" in commit.files:
            text = self._blobs.read(commit.files["README.md"].sha256).decode("utf-8", "replace")
            card, _ = parse_card_metadata(text)
        tags = [str(t) for t in (card or {}).get("tags") or [] if isinstance(t, (str, int, float))]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo.namespace,
            "sha": oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo_type == "space" and card and card.get("sdk"):
            info["sdk"] = card["sdk"]  # the Hub reads a Space's SDK from its README's metadata
        if repo_type == "model":
            info["modelId"] = repo_id
            for key in ("library_name", "pipeline_tag"):
                if card and card.get(key):
                    info[key] = card[key]
            config_entry = commit.files.get("config.json")
            if config_entry is not None and config_entry.size < 1_000_000:
                config = json.loads(self._blobs.read(config_entry.sha256))
                info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
        return Response.json(info)

    # ----------------------------------------------------------------------------------- listings

    @staticmethod
    def _folders(files: Mapping[str, FileEntry]) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    @staticmethod
    def _folder_oid(files: Mapping[str, FileEntry], folder: str) -> str:
        digest = hashlib.sha1(b"tree\0")
        for path in sorted(p for p in files if p.startswith(folder + "/")):
            digest.update(f"{path}\0{files[path].git_oid}\n".encode())
        return digest.hexdigest()

    @staticmethod
    def _last_commit(repo: Repo, head: str, path: str) -> dict[str, str]:
        """The newest commit that changed the file ``path``."""
        history = repo.history(head)
        for commit, parent in zip(history, [*history[1:], None], strict=True):
            if commit.files.get(path) != (parent.files.get(path) if parent else None):
                break
        return {"id": commit.oid, "title": commit.title, "date": commit.date}

    def _listing(self, repo: Repo, head: str, paths: list[str], expand: bool) -> list[dict[str, Any]]:
        files = repo.commits[head].files
        folders = self._folders(files)
        out: list[dict[str, Any]] = []
        for path in paths:
            if path in files:
                entry = files[path]
                item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
                if entry.lfs:
                    item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
                if expand:
                    item["lastCommit"] = self._last_commit(repo, head, path)
                out.append(item)
            elif path in folders:
                out.append({"type": "directory", "oid": self._folder_oid(files, path), "size": 0, "path": path})
        return out

    def _tree(self, req: Request, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        with self._lock:
            files = repo.commits[oid].files
        path = path.strip("/")
        folders = self._folders(files)
        if path and path not in folders:
            raise HubError(404, f"Entry not found: {path!r} is not a folder at {rev}", error_code="EntryNotFound",
                           headers={"X-Repo-Commit": oid})
        prefix = path + "/" if path else ""
        recursive = req.flag("recursive")
        children = {
            candidate for candidate in [*files, *folders]
            if candidate.startswith(prefix) and (recursive or "/" not in candidate[len(prefix) :])
        }
        ordered = sorted(children, key=lambda p: (p not in folders, p))
        with self._lock:
            items = self._listing(repo, oid, ordered, req.flag("expand"))
        return self._paginate(req, items)

    def _paths_info(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        form = parse_qs(req.body().decode(), keep_blank_values=True)
        expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        with self._lock:
            items = self._listing(repo, oid, [p.strip("/") for p in form.get("paths", [])], expand)
        return Response.json(items)

    def _refs(self, req: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        with self._lock:
            branches = [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(repo.branches.items())
            ]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(repo.tags.items())]
        return Response.json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _commits(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        with self._lock:
            history = repo.history(oid)
        items = [
            {"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
             "authors": [{"user": a, "avatar": ""} for a in c.authors]}
            for c in history
        ]
        return self._paginate(req, items)

    # ----------------------------------------------------------------------------------- refs

    def _branch(self, req: Request, repo_type: str, repo_id: str, branch: str, method: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        with self._lock:
            if method == "DELETE":
                if branch == DEFAULT_BRANCH:
                    raise HubError(403, "Cannot delete the default branch 'main'")
                del repo.branches[branch]
                return Response.json({})
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = req.json().get("startingPoint") or DEFAULT_BRANCH
            oid = repo.resolve(start)
            if oid is None:
                raise _revision_not_found(start)
            repo.branches[branch] = oid
        return Response.json({})

    def _tag(self, req: Request, repo_type: str, repo_id: str, name: str, method: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        with self._lock:
            if method == "DELETE":
                del repo.tags[name]
                return Response.json({})
            tag = req.json()["tag"]
            if tag in repo.tags:
                raise HubError(409, f"Tag already exists: refs/tags/{tag}")
            repo.tags[tag] = self._resolve(repo, name)
        return Response.json({})

    # ----------------------------------------------------------------------------------- downloads

    def _file_response(self, req: Request, sha256: str, size: int, headers: dict[str, str]) -> Response:
        """The blob, or the single ``Range: bytes=start-[end]`` asked for (``206``; ``416`` past the end)."""
        headers = {"Accept-Ranges": "bytes", **headers}
        match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", req.headers.get("Range") or "")
        if match is None:
            return Response(200, headers=headers, file_path=self._blobs.path(sha256), offset=0, length=size)
        start = int(match.group(1))
        end = size - 1 if match.group(2) == "" else min(int(match.group(2)), size - 1)
        if start >= size or start > end:
            raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206, headers=headers, file_path=self._blobs.path(sha256), offset=start, length=end - start + 1)

    def _resolve_file(self, req: Request, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        with self._lock:
            entry = repo.commits[oid].files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", error_code="EntryNotFound", headers={"X-Repo-Commit": oid})
        name = path.rsplit("/", 1)[-1]
        common = {"X-Repo-Commit": oid, "Vary": "Origin, Accept-Encoding"}
        if entry.lfs:  # to the signed "CDN" URL, on another origin
            sig = self._sign("download", entry.sha256)
            location = f"{self.cdn_endpoint}/lfs/objects/{entry.sha256}?{urlencode({'sig': sig, 'filename': name})}"
            return Response(
                302,
                body=f"Found. Redirecting to {location}".encode(),
                headers={
                    **common,
                    "Content-Type": "text/plain; charset=utf-8",
                    "Location": location,
                    "ETag": f'"{entry.git_oid}"',
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(entry.size),
                },
            )
        if rev != oid and req.segments[0] != "api":  # a regular file by branch or tag: to the commit's copy
            location = f"/api/resolve-cache/{repo_type}s/{repo_id}/{oid}/{quote(path)}"
            return Response(
                307,
                body=f"Temporary Redirect. Redirecting to {location}".encode(),
                headers={**common, "Content-Type": "text/plain; charset=utf-8", "Location": location,
                         "ETag": f'"{entry.git_oid}"'},
            )
        return self._file_response(req, entry.sha256, entry.size, {
            **common,
            "ETag": f'"{entry.git_oid}"',
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
        })

    def _lfs_cdn(self, req: Request, sha256: str) -> Response:
        self._check_sig(req.arg("sig"), "download", sha256)
        name = req.arg("filename") or sha256
        return self._file_response(req, sha256, self._blobs.size(sha256), {
            "ETag": f'"{sha256}"',
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
        })

    # ----------------------------------------------------------------------------------- uploads

    def _lfs_patterns(self, repo: Repo, oid: str) -> list[str]:
        """The ``filter=lfs`` patterns of the ``.gitattributes`` at ``oid``."""
        entry = repo.commits[oid].files.get(".gitattributes")
        lines = self._blobs.read(entry.sha256).decode("utf-8", "replace").splitlines() if entry else []
        return [parts[0] for parts in map(str.split, lines)
                if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]]

    @staticmethod
    def _matches_any(path: str, patterns: list[str]) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern.lstrip("/")) for pattern in patterns)

    def _branch_head(self, repo: Repo, branch: str) -> str:
        with self._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch} (only branches can be committed to)",
                               error_code="RevisionNotFound")
            return repo.branches[branch]

    def _preupload(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if req.flag("create_pr"):
            raise HubError(400, "Pull requests (create_pr=True) are not supported by this test Hub server")
        head = self._branch_head(repo, rev)
        with self._lock:
            patterns = self._lfs_patterns(repo, head)
            current = repo.commits[head].files
        out = []
        for item in req.json()["files"]:
            path = str(item.get("path"))
            sample = base64.b64decode(item.get("sample") or "")
            lfs = int(item.get("size") or 0) >= LFS_THRESHOLD or b"\0" in sample or self._matches_any(path, patterns)
            existing = current.get(path)
            out.append({
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
                "oid": None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid),
            })
        return Response.json({"files": out, "commitOid": head})

    def _lfs_batch(self, req: Request, repo_type: str, repo_id: str) -> Response:
        """The git-lfs batch API, for uploads: a signed ``PUT`` URL per object not stored yet."""
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        objects = []
        verify_href = f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
        for obj in req.json().get("objects") or []:
            oid, size = obj["oid"], obj["size"]
            if self._blobs.has(oid) and self._blobs.size(oid) == size:
                objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
                continue
            sig = self._sign("upload", oid, str(size))
            href = f"{self.cdn_endpoint}/lfs/upload/{oid}?{urlencode({'size': size, 'sig': sig})}"
            objects.append({
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {"upload": {"href": href}, "verify": {"href": verify_href, "header": {}}},
            })
        return Response.json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, req: Request, oid: str) -> Response:
        size_arg = req.arg("size") or ""
        self._check_sig(req.arg("sig"), "upload", oid, size_arg)
        sha, size, tmp = self._blobs.put_stream(req.iter_body())
        try:
            if (sha, size) != (oid, int(size_arg)):
                raise HubError(400, f"Upload mismatch: expected sha256 {oid} of {size_arg} bytes, got {sha} of {size}")
            self._blobs.commit_tmp(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)
        return Response(200, headers={"ETag": f'"{sha}"'})

    def _lfs_verify(self, req: Request, repo_type: str, repo_id: str) -> Response:
        self._get_repo(req, repo_type, repo_id, write=True)
        oid = req.json()["oid"]
        if not self._blobs.has(oid):
            raise HubError(404, f"LFS object {oid} was not uploaded")
        return Response.json({"success": True})

    def _commit(self, req: Request, repo_type: str, repo_id: str, branch: str) -> Response:
        """The ndjson commit: a ``header`` line (summary, description, parentCommit), then ``file`` (base64),
        ``lfsFile`` (an uploaded LFS object), ``deletedFile`` and ``deletedFolder`` lines."""
        user = self._require_user(req)
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        self._branch_head(repo, branch)
        header: dict[str, Any] = {}
        staged: list[tuple[str, str, FileEntry | None]] = []  # (kind, path, entry); blobs stored outside the lock
        for line in req.body().decode("utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            kind, value = item["key"], item.get("value") or {}
            if kind == "header":
                header = value
            elif kind == "file":
                data = base64.b64decode(value["content"])
                entry = FileEntry(self._blobs.put_bytes(data), len(data), git_blob_oid(data), lfs=False)
                staged.append(("add", value["path"], entry))
            elif kind == "lfsFile":
                oid = value["oid"]
                if not self._blobs.has(oid):
                    raise HubError(400, f"LFS object {oid} was not uploaded: upload it with the LFS batch API first")
                size = self._blobs.size(oid)
                staged.append(("add", value["path"], FileEntry(oid, size, git_blob_oid(lfs_pointer(oid, size)), True)))
            elif kind in ("deletedFile", "deletedFolder"):
                staged.append((kind, value["path"].strip("/"), None))
            else:
                raise HubError(400, f"Unknown commit operation: {kind!r}")
        title = str(header.get("summary") or "").strip()
        description = str(header.get("description") or "")
        with self._lock:
            head = repo.branches[branch]
            if header.get("parentCommit") and header["parentCommit"] != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for kind, path, entry in staged:
                if kind == "add":
                    files[path] = entry
                elif kind == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}",
                                       error_code="EntryNotFound", headers={"X-Repo-Commit": head})
                    del files[path]
                else:
                    for doomed in [p for p in files if p.startswith(path + "/")]:
                        del files[doomed]
            now = hub_datetime()
            oid = self._new_commit_oid(repo_type, repo_id, head, title, description, now)
            repo.commits[oid] = Commit(oid, head, title, description, (user,), now, files)
            repo.branches[branch] = oid
        return Response.json({
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
        })
