"""A small, self-contained Hugging Face Hub-compatible HTTP server for tests.

The public Hub cannot be reached from the test machines, so the tests run the
real, unmodified ``huggingface_hub`` / ``transformers`` clients against this
server, selected with ``HF_ENDPOINT`` (or ``HfApi(endpoint=...)``).  It only uses
the standard library (``http.server.ThreadingHTTPServer`` in a daemon thread);
PyYAML is used when importable to parse model-card metadata, and is optional.

Storage model (a git-like store per repo, blobs on disk in a temporary dir):

* a repo is ``(repo_type, "namespace/name")`` with branches and tags, each
  pointing at a commit;
* a commit is an immutable snapshot ``{path -> FileEntry}`` with a 40-hex id,
  one parent, a title, a message, authors and a date;
* a ``FileEntry`` references a content-addressed blob (sha256) and is either a
  regular git file (ETag = git blob sha1) or an LFS file (ETag = sha256, the git
  oid being the sha1 of the LFS pointer file);
* creating a repo makes an ``initial commit`` holding the Hub's default
  ``.gitattributes`` (like the real Hub), on branch ``main``.

Endpoints (``{types}`` is ``models`` | ``datasets`` | ``spaces``; the file routes
take no prefix for models and ``datasets/`` / ``spaces/`` otherwise; ``{rev}`` is a
branch, a tag, ``refs/heads/..``, ``refs/tags/..`` or a full commit id, URL-quoted;
repo ids are always ``namespace/name``):

``HEAD|GET /[{types}/]{ns}/{name}/resolve/{rev}/{path}``
    Regular file: when ``rev`` is not a commit id, ``307`` to
    ``/api/resolve-cache/...`` (same host, as the real Hub does), else ``200``
    with ``ETag`` (git sha1), ``X-Repo-Commit``, ``Content-Length``,
    ``Accept-Ranges``; ``Range: bytes=a-b`` gives ``206``.  LFS file: ``302`` to a
    signed "CDN" URL on another origin (``http://localhost:PORT/lfs/objects/..``)
    with ``X-Linked-Etag`` (sha256), ``X-Linked-Size``, ``X-Repo-Commit`` and
    ``ETag``; the client then downloads without the ``Authorization`` header.
    Errors are ``404`` with ``X-Error-Code``: ``RepoNotFound`` (``401`` when no
    token is sent), ``RevisionNotFound`` or ``EntryNotFound`` (with
    ``X-Repo-Commit``, so the client caches the non-existence).
``HEAD|GET /api/resolve-cache/{types}/{ns}/{name}/{commit}/{path}``
    Same as ``resolve`` at a fixed commit (target of the ``307`` above).
``HEAD|GET /lfs/objects/{sha256}?sig=..``
    The signed "CDN" download of an LFS blob (``Range`` supported).
``POST /api/repos/create`` ``{"name", "organization", "type", "private"|"visibility", "sdk"}``
    ``200 {"url", "name", "id"}``; ``409`` when it exists ("You already created
    this model repo"); ``401`` without a valid token, ``403`` for a namespace the
    user may not write to.
``DELETE /api/repos/delete`` ``{"name", "organization", "type"}``; ``404 RepoNotFound``.
``PUT /api/{types}/{ns}/{name}/settings`` ``{"private": bool}``.
``POST /api/validate-yaml`` ``{"content", "repoType"}``
    ``{"errors": [], "warnings": []}``; ``400`` with errors when the README
    front matter is not valid YAML mapping (needs PyYAML).
``GET /api/{types}/{ns}/{name}`` and ``.../revision/{rev}``
    ``id``, ``sha``, ``siblings`` (``?blobs=true`` adds size, blobId, lfs),
    ``private``, ``tags``, ``cardData``, ``lastModified``, ``createdAt``...
``GET /api/{types}/{ns}/{name}/tree/{rev}[/{path}]?recursive=..&expand=..``
    Paginated (``Link: <..>; rel="next"``) list of ``file`` / ``directory``
    entries (``oid``, ``size``, ``path``, ``lfs``; ``lastCommit`` with expand).
``POST /api/{types}/{ns}/{name}/paths-info/{rev}`` (form ``paths=..``).
``GET /api/{types}/{ns}/{name}/refs`` ``{"branches", "tags", "converts", "pullRequests"}``.
``GET /api/{types}/{ns}/{name}/commits/{rev}``
    Paginated history, newest first: ``id``, ``title``, ``message``,
    ``authors: [{"user"}]``, ``date``.
``POST|DELETE /api/{types}/{ns}/{name}/branch/{branch}`` ``{"startingPoint"}``
    ``409`` if it exists, ``403`` deleting ``main``.
``POST /api/{types}/{ns}/{name}/tag/{rev}`` ``{"tag", "message"}``;
``DELETE /api/{types}/{ns}/{name}/tag/{tag}``.
``POST /api/{types}/{ns}/{name}/preupload/{rev}`` ``{"files": [{"path", "sample", "size"}]}``
    ``uploadMode`` is ``lfs`` for files of at least ``lfs_threshold`` bytes
    (10 MiB), binary samples (a NUL byte) and paths matching a ``filter=lfs``
    pattern of the branch's ``.gitattributes``; ``oid`` of the current file.
``POST /[{types}/]{ns}/{name}.git/info/lfs/objects/batch``
    git-lfs batch API (``upload``: signed ``PUT`` URL + ``verify`` action, no
    actions when the object is already stored; ``download`` too).
``PUT /lfs/upload/{sha256}?size=..&sig=..``  (the signed upload URL: no token)
    Checks the size and the sha256 of the body (``Content-Length`` or chunked).
``POST /[{types}/]{ns}/{name}.git/info/lfs/objects/verify`` ``{"oid", "size"}``.
``POST /api/{types}/{ns}/{name}/commit/{rev}``
    ndjson: ``header`` (summary, description, parentCommit), ``file`` (base64
    content), ``lfsFile`` (oid of an uploaded LFS object), ``deletedFile``,
    ``deletedFolder`` (the legacy single-JSON form is accepted too).  ``rev`` must
    be a branch.  ``{"commitOid", "commitUrl", "success", "hookOutput"}``;
    ``412`` when ``parentCommit`` is not the branch head, ``404 EntryNotFound``
    when deleting a missing path, ``400`` for an unknown LFS object.
    ``?create_pr=1`` (pull requests) is not supported: ``400``.
``GET /api/whoami-v2``
    ``{"type": "user", "name", "orgs", "auth"}``; ``401`` without a valid token.
``GET /api/agent-harnesses``
    An empty registry (huggingface_hub fetches it to build its user agent).
``GET /api/{types}/{ns}/{name}/xet-(read|write)-token/{rev}``
    ``400``: Xet is not supported, set ``HF_HUB_DISABLE_XET=1``.

Auth: ``tokens`` maps bearer tokens to user names; a user may write to (and see
the private repos of) its own namespace and its ``orgs``.  Any request with an
unknown bearer token gets ``401`` "Invalid credentials in Authorization header"
(as the real Hub); write endpoints without a token get ``401``; private repos
are invisible without access (``401`` without a token, ``404`` with one, both
with ``X-Error-Code: RepoNotFound``).

Fault injection: ``hub.fail_next(path_regex, status=500, times=1, method=None,
disconnect=False, when="before", delay=0.0)`` makes the next matching requests
fail with ``status``, or drop the connection without a response
(``disconnect=True``); ``when="after"`` applies the request first (e.g. the
commit lands) and then fails or drops the response (a lost response).  Every
request is recorded in ``hub.requests`` (method, path, status, user).

Usage::

    with HubServer() as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        ...
        env = hub.env(tmp_path)  # HF_ENDPOINT, HF_TOKEN, fresh HF_HOME/... for a subprocess

Run standalone with ``python tests/helpers/hub_server.py --port 8765``.
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
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "OTHER_TOKEN",
    "OTHER_USER",
    "UNSET_ENV_VARS",
    "Commit",
    "FaultRule",
    "FileEntry",
    "HubServer",
    "RequestRecord",
]

DEFAULT_USER = "user"
DEFAULT_TOKEN = "hf_test_user_token"
OTHER_USER = "other"
OTHER_TOKEN = "hf_test_other_token"
DEFAULT_ORG = "test-org"

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
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_REF_NAME_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
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


def hub_datetime(ts: float | None = None) -> str:
    """A date in the Hub's format, e.g. ``2024-05-01T12:00:00.123Z``."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_card_metadata(readme: str) -> tuple[dict[str, Any] | None, str | None]:
    """Return ``(metadata, error)`` for the YAML front matter of a model card."""
    if not readme.startswith("---"):
        return None, None
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", readme, flags=re.DOTALL)
    if match is None:
        match = re.match(r"^---[ \t]*\r?\n---[ \t]*(?:\r?\n|$)", readme)
        if match is not None:
            return {}, None
        return None, "The YAML metadata block is not closed by a '---' line."
    try:
        import yaml  # optional: shipped with huggingface_hub
    except ImportError:  # pragma: no cover - PyYAML is a dependency of huggingface_hub
        return None, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return None, f"Invalid YAML in the model card metadata: {err}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, "The YAML metadata of the model card must be a mapping."
    return data, None


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit snapshot."""

    sha256: str
    size: int
    git_oid: str  #: git blob sha1 of the content (regular file) or of the LFS pointer (LFS file)
    lfs: bool

    @property
    def etag(self) -> str:
        """The ETag the Hub sends: sha256 for LFS files, the git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_oid

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
    sdk: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def resolve(self, rev: str) -> str | None:
        """Commit id of a branch, tag, full ref or commit id; ``None`` when unknown."""
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if rev.startswith("refs/heads/") and rev[len("refs/heads/") :] in self.branches:
            return self.branches[rev[len("refs/heads/") :]]
        if rev.startswith("refs/tags/") and rev[len("refs/tags/") :] in self.tags:
            return self.tags[rev[len("refs/tags/") :]]
        if _COMMIT_RE.match(rev) and rev in self.commits:
            return rev
        return None

    def history(self, commit_oid: str) -> list[Commit]:
        """The commits reachable from ``commit_oid``, newest first."""
        out: list[Commit] = []
        oid: str | None = commit_oid
        while oid is not None:
            commit = self.commits[oid]
            out.append(commit)
            oid = commit.parent
        return out


@dataclass
class FaultRule:
    """A fault to inject into the next requests matching ``pattern`` (see ``HubServer.fail_next``)."""

    pattern: re.Pattern[str]
    status: int = 500
    times: int = 1
    method: str | None = None
    disconnect: bool = False
    when: str = "before"
    delay: float = 0.0
    message: str = "Internal Error - injected fault"
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

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
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
        return _SHA256_RE.match(sha256) is not None and self.path(sha256).is_file()

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
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size, tmp

    def commit_tmp(self, tmp: Path, sha256: str) -> None:
        """Move a temporary file written by ``put_stream`` into the store as ``sha256``."""
        dest = self.path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


# --------------------------------------------------------------------------------------------- request


class Request:
    """A parsed request, with lazy body reading."""

    def __init__(self, handler: _Handler, hub: HubServer) -> None:
        self.handler = handler
        self.hub = hub
        self.method = handler.command
        split = urlsplit(handler.path)
        self.raw_path = split.path
        self.raw_query = split.query
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.segments = [unquote(seg) for seg in split.path.split("/") if seg != ""]
        self.headers = handler.headers
        self.user: str | None = None
        self.token_sent = False
        self._body: bytes | None = None
        self._consumed = False

    # -- query helpers
    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.arg(name, "") or "").lower() in ("1", "true", "yes")

    # -- body helpers
    def iter_body(self) -> Iterator[bytes]:
        """Stream the request body (``Content-Length`` or chunked transfer encoding)."""
        if self._consumed:
            return
        self._consumed = True
        rfile = self.handler.rfile
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = rfile.readline(65537)
                if not line:
                    raise ConnectionError("connection closed in a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = rfile.read(min(remaining, _CHUNK))
                    if not data:
                        raise ConnectionError("connection closed in a chunked body")
                    remaining -= len(data)
                    yield data
                rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                data = rfile.read(min(remaining, _CHUNK))
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
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as err:
            raise HubError(400, f"Invalid JSON body: {err}") from err

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
        if self.server.hub.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _handle(self) -> None:
        hub = self.server.hub
        req = Request(self, hub)
        rule = hub._take_fault(req.method, req.raw_path)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and rule.when == "before" and (rule.disconnect or rule.status):
            if rule.disconnect:
                req.drain(limit=64 * 1024)
                self._drop(req)
                return
            req.drain()
            resp = HubError(rule.status, rule.message).to_response()
            self._write(req, resp)
            return
        try:
            resp = hub._route(req)
        except HubError as err:
            resp = err.to_response()
        except (ConnectionError, OSError) as err:
            if hub.verbose:
                traceback.print_exc()
            self.close_connection = True
            hub._record(req, None)
            del err
            return
        except Exception as err:  # a server bug: answer 500 with the traceback, keep serving
            traceback.print_exc()
            resp = HubError(500, f"Test Hub server error: {type(err).__name__}: {err}").to_response()
        try:
            req.drain()
        except (ConnectionError, OSError):
            self.close_connection = True
            hub._record(req, None)
            return
        if rule is not None and rule.when == "after" and (rule.disconnect or rule.status):
            if rule.disconnect:
                self._drop(req)
                return
            resp = HubError(rule.status, rule.message).to_response()
        self._write(req, resp)

    def _drop(self, req: Request) -> None:
        """Close the connection without any answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.hub._record(req, None)

    def _write(self, req: Request, resp: Response) -> None:
        headers = {
            "X-Request-Id": self.headers.get("X-Amzn-Trace-Id") or uuid.uuid4().hex,
            **resp.headers,
        }
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
        self.server.hub._record(req, resp.status)


class HubServer:
    """A Hub-compatible HTTP server in a background thread (use as a context manager).

    Args:
        tokens: bearer token -> user name (default: ``DEFAULT_TOKEN`` -> ``"user"`` and
            ``OTHER_TOKEN`` -> ``"other"``).
        orgs: user -> organisations the user may write to (default ``{"user": ["test-org"]}``).
        host: loopback address to bind (``127.0.0.1``).
        port: port to bind (0: a free one).
        storage_dir: where blobs are stored (default: a temporary directory removed on stop).
        lfs_threshold: files of at least this size are uploaded through LFS (10 MiB, as the Hub).
        cdn_host: host name of the "CDN" origin serving LFS blobs and upload URLs; must differ
            from ``host`` so that the client treats it as another origin (``localhost``).
        page_size: page size of the paginated listings (tree, commits).
        resolve_cache_redirect: redirect ``resolve/{branch}`` of regular files to
            ``/api/resolve-cache/...`` as the real Hub does.
        verbose: log every request and server errors to stderr.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, str] | None = None,
        orgs: Mapping[str, Sequence[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_dir: str | os.PathLike[str] | None = None,
        lfs_threshold: int = LFS_THRESHOLD,
        cdn_host: str = "localhost",
        page_size: int = 1000,
        resolve_cache_redirect: bool = True,
        verbose: bool = False,
    ) -> None:
        self.tokens: dict[str, str] = dict(
            tokens if tokens is not None else {DEFAULT_TOKEN: DEFAULT_USER, OTHER_TOKEN: OTHER_USER}
        )
        self.orgs: dict[str, list[str]] = {
            user: list(names) for user, names in (orgs if orgs is not None else {DEFAULT_USER: [DEFAULT_ORG]}).items()
        }
        self.host = host
        self.port = port
        self.lfs_threshold = lfs_threshold
        self.cdn_host = cdn_host
        self.page_size = page_size
        self.resolve_cache_redirect = resolve_cache_redirect
        self.verbose = verbose
        self.requests: list[RequestRecord] = []
        self._own_storage = storage_dir is None
        self._storage = Path(storage_dir) if storage_dir is not None else None
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
        if self._httpd is not None:
            return self
        if self._storage is None:
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
        """Stop serving, close the socket and remove the temporary storage."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_active()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_storage and self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # ----------------------------------------------------------------------------------- public API

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT`` / ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def cdn_endpoint(self) -> str:
        """The origin of the LFS "CDN" (same server, another host name)."""
        return f"http://{self.cdn_host}:{self.port}"

    @property
    def token(self) -> str:
        """A valid write token for ``user`` (the first of ``tokens``)."""
        return next(iter(self.tokens))

    @property
    def user(self) -> str:
        return self.tokens[self.token]

    def add_token(self, token: str, user: str, orgs: Sequence[str] = ()) -> None:
        """Accept ``token`` as ``user`` (member of ``orgs``)."""
        with self._lock:
            self.tokens[token] = user
            if orgs:
                self.orgs.setdefault(user, []).extend(orgs)

    def new_repo_id(self, prefix: str = "repo", namespace: str | None = None) -> str:
        """A repo id not used yet on this server, e.g. ``user/tiny-3``."""
        with self._lock:
            self._repo_seq += 1
            return f"{namespace or self.user}/{prefix}-{self._repo_seq}"

    def env(self, base_dir: str | os.PathLike[str] | None = None, *, token: str | None = "") -> dict[str, str]:
        """Environment variables for a client of this server, with fresh empty caches.

        ``HF_ENDPOINT``, ``HF_TOKEN`` (``token``; default ``self.token``; ``None``: anonymous),
        ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_MODULES_CACHE``, ``HF_XET_CACHE``, ``HF_ASSETS_CACHE``,
        ``HF_DATASETS_CACHE``, ``HF_TOKEN_PATH`` under ``base_dir`` (default: a new temporary dir
        in the server storage), plus ``HF_HUB_DISABLE_XET=1`` and ``HF_HUB_DISABLE_TELEMETRY=1``.
        The variables of ``UNSET_ENV_VARS`` (``HF_HUB_OFFLINE``...) must be removed from the
        inherited environment: ``helpers.hub_clients.client_environ`` and ``run_client`` do it.
        """
        if base_dir is None:
            assert self._storage is not None, "start the server first"
            base = Path(tempfile.mkdtemp(prefix="client-", dir=self._storage))
        else:
            base = Path(base_dir)
        home = base / "hf_home"
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

    def fail_next(
        self,
        path_regex: str,
        status: int = 500,
        *,
        times: int = 1,
        method: str | None = None,
        disconnect: bool = False,
        when: str = "before",
        delay: float = 0.0,
        message: str = "Internal Error - injected fault",
    ) -> FaultRule:
        """Make the next ``times`` requests whose path matches ``path_regex`` fail.

        ``status``: the HTTP status to answer (a JSON ``error`` body with ``message``).
        ``disconnect``: drop the connection without answering instead (for a large body, after
        reading its first 64 KiB: an upload cut mid-request).
        ``when``: ``"before"`` (the request is not applied) or ``"after"`` (it is applied, then the
        answer is replaced or dropped: a lost response).  ``delay``: sleep before handling.
        ``status=0`` with a ``delay`` only delays.  Returns the rule (``rule.hits`` counts uses).
        """
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        rule = FaultRule(
            pattern=re.compile(path_regex),
            status=status,
            times=times,
            method=method,
            disconnect=disconnect,
            when=when,
            delay=delay,
            message=message,
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def commit_ids(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> list[str]:
        """Commit ids reachable from ``revision`` (newest first), read from the store directly."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            head = repo.resolve(revision)
            if head is None:
                raise KeyError(revision)
            return [c.oid for c in repo.history(head)]

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` with their content, read from the store directly."""
        assert self._blobs is not None
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            head = repo.resolve(revision)
            if head is None:
                raise KeyError(revision)
            entries = dict(repo.commits[head].files)
        return {path: self._blobs.read(entry.sha256) for path, entry in entries.items()}

    def every_commit_file(self, repo_id: str, repo_type: str = "model") -> list[tuple[str, str, bytes]]:
        """``(commit oid, path, content)`` of every file of every commit of ``repo_id``, reachable from a ref or
        not: what anyone can still download from the repo's history."""
        assert self._blobs is not None
        with self._lock:
            commits = list(self._repos[(repo_type, repo_id)].commits.values())
        return [
            (commit.oid, path, self._blobs.read(entry.sha256))
            for commit in commits
            for path, entry in commit.files.items()
        ]

    def stored_blobs(self) -> Iterator[bytes]:
        """The content of every blob this server has stored, for any repo, committed or not."""
        assert self._blobs is not None
        for path in sorted(self._blobs.root.glob("??/*")):
            yield path.read_bytes()

    def is_lfs(self, repo_id: str, path: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> bool:
        """Whether ``path`` is stored as an LFS file at ``revision``."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            head = repo.resolve(revision)
            if head is None:
                raise KeyError(revision)
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
        return user is not None and (namespace == user or namespace in self.orgs.get(user, ()))

    def _authenticate(self, req: Request) -> None:
        auth = req.headers.get("Authorization")
        if not auth:
            return
        req.token_sent = True
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
        try:
            page = max(int(req.arg("p", "0") or 0), 0)
        except ValueError as err:
            raise HubError(400, "Invalid page number") from err
        size = max(self.page_size, 1)
        chunk = items[page * size : (page + 1) * size]
        headers: dict[str, str] = {}
        if (page + 1) * size < len(items):
            query = {k: v[-1] for k, v in req.query.items()}
            query["p"] = str(page + 1)
            headers["Link"] = f'<{self.endpoint}{req.raw_path}?{urlencode(query)}>; rel="next"'
        return Response.json(chunk, headers=headers)

    # ----------------------------------------------------------------------------------- routing

    def _route(self, req: Request) -> Response:
        seg = req.segments
        signed = len(seg) >= 2 and seg[0] == "lfs" and seg[1] in ("upload", "objects")
        if not signed:
            self._authenticate(req)
        method = req.method
        if not seg:
            return Response(body=b"hf-primaldual test Hub server\n", headers={"Content-Type": "text/plain"})
        if signed:
            if seg[1] == "upload" and len(seg) == 3 and method == "PUT":
                return self._lfs_put(req, seg[2])
            if seg[1] == "objects" and len(seg) == 3 and method in ("GET", "HEAD"):
                return self._lfs_cdn(req, seg[2])
            raise HubError(405, "Method not allowed")
        if seg[0] == "api":
            return self._route_api(req, seg[1:], method)
        # file routes: /[datasets|spaces/]{ns}/{name}/resolve/... and /{ns}/{name}.git/info/lfs/...
        repo_type = "model"
        rest = seg
        if seg[0] in ("datasets", "spaces") and len(seg) >= 3:
            repo_type = REPO_TYPES[seg[0]]
            rest = seg[1:]
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(req, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{rest[0]}/{rest[1][: -len('.git')]}"
            if rest[5] == "batch" and method == "POST":
                return self._lfs_batch(req, repo_type, repo_id)
            if rest[5] == "verify" and method == "POST":
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
            if action == "settings" and len(rest) == 1 and method == "PUT":
                return self._settings(req, repo_type, repo_id)
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
        return Response.json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "isPro": False,
                "canPay": False,
                "orgs": [{"type": "org", "name": org, "fullname": org} for org in self.orgs.get(user, ())],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": f"test-token-{token[-4:]}", "role": "write"},
                },
            }
        )

    def _repo_type_arg(self, value: Any) -> str:
        repo_type = value or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        return str(repo_type)

    def _create_repo(self, req: Request) -> Response:
        user = self._require_user(req)
        payload = req.json()
        name = payload.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name) or "--" in name or ".." in name:
            raise HubError(400, f"Invalid repo name: {name!r}")
        namespace = payload.get("organization") or user
        repo_type = self._repo_type_arg(payload.get("type"))
        if not self._can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}")
        visibility = payload.get("visibility")
        private = bool(payload.get("private", False)) if visibility is None else visibility == "private"
        repo_id = f"{namespace}/{name}"
        url = self._repo_url(repo_type, repo_id)
        assert self._blobs is not None
        gitattributes = DEFAULT_GITATTRIBUTES.encode()
        sha = self._blobs.put_bytes(gitattributes)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            now = hub_datetime()
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=now, sdk=payload.get("sdk"))
            entry = FileEntry(sha256=sha, size=len(gitattributes), git_oid=git_blob_oid(gitattributes), lfs=False)
            oid = self._new_commit_oid(repo_type, repo_id, "initial commit")
            repo.commits[oid] = Commit(oid, None, "initial commit", "", ("system",), now, {".gitattributes": entry})
            repo.branches[DEFAULT_BRANCH] = oid
            self._repos[(repo_type, repo_id)] = repo
        return Response.json({"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _delete_repo(self, req: Request) -> Response:
        user = self._require_user(req)
        payload = req.json()
        repo_type = self._repo_type_arg(payload.get("type"))
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        self._get_repo(req, repo_type, repo_id, write=True)
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)
        return Response.json({})

    def _settings(self, req: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        payload = req.json()
        with self._lock:
            if "private" in payload:
                repo.private = bool(payload["private"])
            if payload.get("visibility") in ("private", "public"):
                repo.private = payload["visibility"] == "private"
        return Response.json({"private": repo.private})

    def _validate_yaml(self, req: Request) -> Response:
        payload = req.json()
        content = payload.get("content")
        if not isinstance(content, str):
            raise HubError(400, "Missing 'content'", extra={"errors": [{"message": "Missing 'content'"}]})
        _, error = parse_card_metadata(content)
        if error is not None:
            return Response.json({"error": error, "errors": [{"message": error}], "warnings": []}, status=400)
        return Response.json({"errors": [], "warnings": []})

    def _repo_info(self, req: Request, repo_type: str, repo_id: str, rev: str | None) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev if rev is not None else DEFAULT_BRANCH)
        assert self._blobs is not None
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
        if repo_type == "model":
            info["modelId"] = repo_id
            if card and card.get("library_name"):
                info["library_name"] = card["library_name"]
            if card and card.get("pipeline_tag"):
                info["pipeline_tag"] = card["pipeline_tag"]
            config_entry = commit.files.get("config.json")
            if config_entry is not None and config_entry.size < 1_000_000:
                try:
                    config = json.loads(self._blobs.read(config_entry.sha256))
                    info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
                except ValueError:
                    pass
        elif repo_type == "space":
            info["sdk"] = repo.sdk
        return Response.json(info)

    # ----------------------------------------------------------------------------------- listings

    def _entry_json(self, path: str, entry: FileEntry) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        return item

    @staticmethod
    def _folder_oid(files: Mapping[str, FileEntry], folder: str) -> str:
        prefix = folder + "/"
        digest = hashlib.sha1(b"tree\0")
        for path in sorted(p for p in files if p.startswith(prefix)):
            digest.update(f"{path}\0{files[path].git_oid}\n".encode())
        return digest.hexdigest()

    def _last_commit(self, repo: Repo, head: str, path: str, is_dir: bool) -> dict[str, str]:
        history = repo.history(head)
        for i, commit in enumerate(history):
            parent_files = history[i + 1].files if i + 1 < len(history) else {}

            def snapshot(files: Mapping[str, FileEntry]) -> Any:
                if is_dir:
                    return {p: e for p, e in files.items() if p.startswith(path + "/")}
                return files.get(path)

            if snapshot(commit.files) != snapshot(parent_files):
                return {"id": commit.oid, "title": commit.title, "date": commit.date}
        last = history[-1]
        return {"id": last.oid, "title": last.title, "date": last.date}

    def _listing(self, repo: Repo, head: str, files: Mapping[str, FileEntry], paths: list[str], expand: bool) -> list:
        folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        out: list[dict[str, Any]] = []
        for path in paths:
            if path in files:
                item = self._entry_json(path, files[path])
                if expand:
                    item["lastCommit"] = self._last_commit(repo, head, path, False)
            elif path in folders:
                item = {"type": "directory", "oid": self._folder_oid(files, path), "size": 0, "path": path}
                if expand:
                    item["lastCommit"] = self._last_commit(repo, head, path, True)
            else:
                continue
            out.append(item)
        return out

    def _tree(self, req: Request, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        with self._lock:
            files = repo.commits[oid].files
        path = path.strip("/")
        folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        if path and path not in folders:
            raise HubError(
                404, f"Entry not found: {path!r} is not a folder at {rev}", error_code="EntryNotFound",
                headers={"X-Repo-Commit": oid},
            )
        prefix = path + "/" if path else ""
        recursive = req.flag("recursive")
        children: set[str] = set()
        for candidate in list(files) + list(folders):
            if not candidate.startswith(prefix) or candidate == path:
                continue
            if recursive or "/" not in candidate[len(prefix) :]:
                children.add(candidate)
        ordered = sorted(children, key=lambda p: (p not in folders, p))
        with self._lock:
            items = self._listing(repo, oid, files, ordered, req.flag("expand"))
        return self._paginate(req, items)

    def _paths_info(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id)
        oid = self._resolve(repo, rev)
        content_type = req.headers.get("Content-Type") or ""
        if "json" in content_type:
            payload = req.json()
            paths = payload.get("paths") or []
            expand = bool(payload.get("expand"))
        else:
            form = parse_qs(req.body().decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        with self._lock:
            files = repo.commits[oid].files
            items = self._listing(repo, oid, files, [str(p).strip("/") for p in paths], expand)
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
        items = []
        for c in history:
            item: dict[str, Any] = {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": a, "avatar": ""} for a in c.authors],
                "date": c.date,
            }
            if "formatted" in req.query.get("expand[]", []):
                item["formatted"] = {"title": f"<p>{c.title}</p>", "message": f"<p>{c.message}</p>"}
            items.append(item)
        return self._paginate(req, items)

    # ----------------------------------------------------------------------------------- refs

    def _branch(self, req: Request, repo_type: str, repo_id: str, branch: str, method: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if method == "DELETE":
            with self._lock:
                if branch == DEFAULT_BRANCH:
                    raise HubError(403, "Cannot delete the default branch 'main'")
                if branch not in repo.branches:
                    raise _revision_not_found(branch)
                del repo.branches[branch]
            return Response.json({})
        if not _REF_NAME_RE.match(branch) or _COMMIT_RE.match(branch) or branch.startswith("refs/"):
            raise HubError(400, f"Invalid branch name: {branch!r}")
        payload = req.json()
        start = payload.get("startingPoint") or DEFAULT_BRANCH
        with self._lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            oid = repo.resolve(start)
            if oid is None:
                raise _revision_not_found(start)
            repo.branches[branch] = oid
        return Response.json({})

    def _tag(self, req: Request, repo_type: str, repo_id: str, name: str, method: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if method == "DELETE":
            with self._lock:
                if name not in repo.tags:
                    raise _revision_not_found(name)
                del repo.tags[name]
            return Response.json({})
        payload = req.json()
        tag = payload.get("tag")
        if not isinstance(tag, str) or not _REF_NAME_RE.match(tag) or tag.startswith("refs/"):
            raise HubError(400, f"Invalid tag name: {tag!r}")
        with self._lock:
            if tag in repo.tags:
                raise HubError(409, f"Tag already exists: refs/tags/{tag}")
            oid = repo.resolve(name)
            if oid is None:
                raise _revision_not_found(name)
            repo.tags[tag] = oid
        return Response.json({})

    # ----------------------------------------------------------------------------------- downloads

    @staticmethod
    def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
        """``(start, end_inclusive)`` of a single ``bytes=`` range; ``None`` for the whole file."""
        if not header:
            return None
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if match is None or (match.group(1) == "" and match.group(2) == ""):
            return None
        first, last = match.groups()
        if first == "":
            length = int(last)
            if length == 0:
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            return max(size - length, 0), size - 1
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
        if start >= size or start > end:
            raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
        return start, end

    def _file_response(self, req: Request, sha256: str, size: int, headers: dict[str, str]) -> Response:
        assert self._blobs is not None
        rng = self._parse_range(req.headers.get("Range"), size)
        headers = {"Accept-Ranges": "bytes", **headers}
        if rng is None:
            return Response(200, headers=headers, file_path=self._blobs.path(sha256), offset=0, length=size)
        start, end = rng
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
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        common = {"X-Repo-Commit": oid, "Vary": "Origin, Accept-Encoding"}
        if entry.lfs:
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
        if self.resolve_cache_redirect and rev != oid and req.segments[0] != "api":
            location = f"/api/resolve-cache/{repo_type}s/{repo_id}/{oid}/{quote(path)}"
            return Response(
                307,
                body=f"Temporary Redirect. Redirecting to {location}".encode(),
                headers={**common, "Content-Type": "text/plain; charset=utf-8", "Location": location,
                         "ETag": f'"{entry.git_oid}"'},
            )
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._file_response(
            req,
            entry.sha256,
            entry.size,
            {**common, "ETag": f'"{entry.git_oid}"', "Content-Type": content_type, "Content-Disposition": disposition},
        )

    def _lfs_cdn(self, req: Request, sha256: str) -> Response:
        assert self._blobs is not None
        self._check_sig(req.arg("sig"), "download", sha256)
        if not self._blobs.has(sha256):
            raise HubError(404, "LFS object not found")
        name = req.arg("filename") or sha256
        return self._file_response(
            req,
            sha256,
            self._blobs.size(sha256),
            {
                "ETag": f'"{sha256}"',
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
            },
        )

    # ----------------------------------------------------------------------------------- uploads

    def _gitattributes_lfs_patterns(self, repo: Repo, oid: str) -> list[str]:
        assert self._blobs is not None
        entry = repo.commits[oid].files.get(".gitattributes")
        if entry is None:
            return []
        patterns = []
        for line in self._blobs.read(entry.sha256).decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                patterns.append(parts[0])
        return patterns

    @staticmethod
    def _matches_any(path: str, patterns: list[str]) -> bool:
        name = path.rsplit("/", 1)[-1]
        for pattern in patterns:
            target = path if "/" in pattern else name
            if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
                return True
        return False

    def _branch_head(self, repo: Repo, rev: str) -> str:
        with self._lock:
            if rev.startswith("refs/heads/"):
                rev = rev[len("refs/heads/") :]
            if rev not in repo.branches:
                raise HubError(
                    404,
                    f"Invalid rev id: {rev} (only branches can be committed to)",
                    error_code="RevisionNotFound",
                )
            return repo.branches[rev]

    def _preupload(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if req.flag("create_pr"):
            raise HubError(400, "Pull requests (create_pr=True) are not supported by this test Hub server")
        head = self._branch_head(repo, rev)
        payload = req.json()
        files = payload.get("files")
        if not isinstance(files, list):
            raise HubError(400, "Invalid preupload payload: 'files' must be a list")
        with self._lock:
            patterns = self._gitattributes_lfs_patterns(repo, head)
            current = repo.commits[head].files
        out = []
        for item in files:
            path = item.get("path")
            size = int(item.get("size") or 0)
            try:
                sample = base64.b64decode(item.get("sample") or "")
            except ValueError as err:
                raise HubError(400, f"Invalid base64 sample for {path!r}") from err
            lfs = size >= self.lfs_threshold or b"\0" in sample or self._matches_any(str(path), patterns)
            existing = current.get(str(path))
            out.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid),
                }
            )
        return Response.json({"files": out, "commitOid": head})

    def _lfs_batch(self, req: Request, repo_type: str, repo_id: str) -> Response:
        assert self._blobs is not None
        payload = req.json()
        operation = payload.get("operation")
        repo = self._get_repo(req, repo_type, repo_id, write=operation == "upload")
        if operation not in ("upload", "download"):
            raise HubError(400, f"Unsupported LFS operation: {operation!r}")
        objects = []
        verify_href = f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
        for obj in payload.get("objects") or []:
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not _SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
                objects.append(
                    {"oid": str(oid), "size": size if isinstance(size, int) else 0,
                     "error": {"code": 422, "message": "Invalid object oid or size"}}
                )
                continue
            if operation == "upload":
                if self._blobs.has(oid) and self._blobs.size(oid) == size:
                    objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
                    continue
                sig = self._sign("upload", oid, str(size))
                href = f"{self.cdn_endpoint}/lfs/upload/{oid}?{urlencode({'size': size, 'sig': sig})}"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {"upload": {"href": href}, "verify": {"href": verify_href, "header": {}}},
                    }
                )
            else:
                if not self._blobs.has(oid):
                    objects.append({"oid": oid, "size": size, "error": {"code": 404, "message": "Object not found"}})
                    continue
                sig = self._sign("download", oid)
                href = f"{self.cdn_endpoint}/lfs/objects/{oid}?{urlencode({'sig': sig})}"
                objects.append({"oid": oid, "size": size, "actions": {"download": {"href": href}}})
        return Response.json(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, req: Request, oid: str) -> Response:
        assert self._blobs is not None
        size_arg = req.arg("size") or ""
        self._check_sig(req.arg("sig"), "upload", oid, size_arg)
        sha, size, tmp = self._blobs.put_stream(req.iter_body())
        try:
            if size != int(size_arg):
                raise HubError(400, f"Size mismatch: expected {size_arg} bytes, received {size}")
            if sha != oid:
                raise HubError(400, f"Checksum mismatch: expected sha256 {oid}, received {sha}")
            self._blobs.commit_tmp(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)
        return Response(200, headers={"ETag": f'"{sha}"'})

    def _lfs_verify(self, req: Request, repo_type: str, repo_id: str) -> Response:
        assert self._blobs is not None
        self._get_repo(req, repo_type, repo_id, write=True)
        payload = req.json()
        oid, size = payload.get("oid"), payload.get("size")
        if not isinstance(oid, str) or not self._blobs.has(oid):
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if size is not None and self._blobs.size(oid) != size:
            raise HubError(400, f"LFS object {oid} has size {self._blobs.size(oid)}, expected {size}")
        return Response.json({"success": True})

    @staticmethod
    def _check_path(path: Any) -> str:
        if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
            raise HubError(400, f"Invalid path in repo: {path!r}")
        if any(part in ("", ".", "..") for part in path.split("/")) or path.startswith(".git/") or "\0" in path:
            raise HubError(400, f"Invalid path in repo: {path!r}")
        return path

    def _parse_commit_ops(self, req: Request) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        raw = req.body().decode("utf-8")
        lines = [line for line in raw.splitlines() if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except ValueError:
            items = []
        if items and all(isinstance(i, dict) and "key" in i for i in items):
            header: dict[str, Any] = {}
            ops: list[tuple[str, dict[str, Any]]] = []
            for item in items:
                if item["key"] == "header":
                    header = dict(item.get("value") or {})
                else:
                    ops.append((str(item["key"]), dict(item.get("value") or {})))
            return header, ops
        # legacy JSON payload: {"summary", "description", "files", "lfsFiles", "deletedFiles"}
        try:
            legacy = json.loads(raw) if raw.strip() else {}
        except ValueError as err:
            raise HubError(400, f"Invalid commit payload: {err}") from err
        if not isinstance(legacy, dict):
            raise HubError(400, "Invalid commit payload")
        ops = [("file", f) for f in legacy.get("files") or []]
        ops += [("lfsFile", f) for f in legacy.get("lfsFiles") or []]
        ops += [("deletedFile", f) for f in legacy.get("deletedFiles") or []]
        ops += [("deletedFolder", f) for f in legacy.get("deletedFolders") or []]
        return legacy, ops

    def _commit(self, req: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        assert self._blobs is not None
        user = self._require_user(req)
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        if req.flag("create_pr"):
            raise HubError(400, "Pull requests (create_pr=True) are not supported by this test Hub server")
        self._branch_head(repo, rev)
        branch = rev[len("refs/heads/") :] if rev.startswith("refs/heads/") else rev
        header, ops = self._parse_commit_ops(req)
        title = str(header.get("summary") or "").strip()
        if not title:
            raise HubError(400, "The commit summary (title) must not be empty")
        description = str(header.get("description") or "")
        # Store the new blobs first (outside the lock); LFS objects must already be uploaded.
        staged: list[tuple[str, str, FileEntry | None]] = []  # (kind, path, entry)
        for kind, value in ops:
            if kind == "file":
                path = self._check_path(value.get("path"))
                encoding = value.get("encoding", "base64")
                content = value.get("content", "")
                try:
                    data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
                except ValueError as err:
                    raise HubError(400, f"Invalid base64 content for {path!r}") from err
                sha = self._blobs.put_bytes(data)
                staged.append(("add", path, FileEntry(sha, len(data), git_blob_oid(data), lfs=False)))
            elif kind == "lfsFile":
                path = self._check_path(value.get("path"))
                oid = str(value.get("oid") or "")
                if value.get("algo", "sha256") != "sha256" or not self._blobs.has(oid):
                    raise HubError(
                        400,
                        f"LFS object {oid} for {path!r} was not found: upload it with the LFS batch API first",
                    )
                size = self._blobs.size(oid)
                if value.get("size") is not None and int(value["size"]) != size:
                    raise HubError(400, f"LFS object {oid} has size {size}, not {value['size']}")
                staged.append(("add", path, FileEntry(oid, size, git_blob_oid(lfs_pointer(oid, size)), lfs=True)))
            elif kind in ("deletedFile", "deletedFolder"):
                path = str(value.get("path") or "").strip("/")
                if not path:
                    raise HubError(400, f"Invalid path to delete: {value.get('path')!r}")
                staged.append((kind, path, None))
            else:
                raise HubError(400, f"Unknown commit operation: {kind!r}")
        with self._lock:
            head = repo.branches.get(branch)
            if head is None:
                raise _revision_not_found(branch)
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for kind, path, entry in staged:
                if kind == "add":
                    assert entry is not None
                    files[path] = entry
                elif kind == "deletedFile":
                    if path not in files:
                        raise HubError(
                            404, f"A file with this name doesn't exist: {path}", error_code="EntryNotFound",
                            headers={"X-Repo-Commit": head},
                        )
                    del files[path]
                else:
                    doomed = [p for p in files if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(
                            404, f"A folder with this name doesn't exist: {path}", error_code="EntryNotFound",
                            headers={"X-Repo-Commit": head},
                        )
                    for p in doomed:
                        del files[p]
            now = hub_datetime()
            oid = self._new_commit_oid(repo_type, repo_id, head, title, description, now)
            repo.commits[oid] = Commit(oid, head, title, description, (user,), now, files)
            repo.branches[branch] = oid
        return Response.json(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the test Hub server in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    with HubServer(host=args.host, port=args.port, storage_dir=args.storage, verbose=args.verbose) as hub:
        print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
        for token, user in hub.tokens.items():
            print(f"token {token} -> user {user}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    _main()
