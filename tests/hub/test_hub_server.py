"""Round trips of the real, unmodified huggingface_hub / transformers clients through the test Hub server.

Uploads go through ``upload_folder`` / ``create_commit`` (regular files base64 in the ndjson commit,
large and binary files through the git-lfs batch API + signed PUT), downloads through
``hf_hub_download`` / ``snapshot_download`` into empty caches, by branch, tag and commit sha.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from helpers.hub_clients import HubEnv, run_client, run_client_json
from helpers.hub_server import OTHER_TOKEN, HubServer

pytestmark = pytest.mark.hub  # every test here runs the test Hub server, some their own instance

README = """---
license: apache-2.0
library_name: transformers
tags:
- primal-dual
- test
---

# Test model

A card with YAML front matter.
"""
BIG_SIZE = 10 * 1024 * 1024 + 4321  # over the Hub's 10 MiB threshold: forces the LFS upload path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_bytes(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pseudo_random(size: int, seed: bytes) -> bytes:
    """Incompressible, reproducible bytes (faster than os.urandom for tests that compare)."""
    out = bytearray()
    block = hashlib.sha512(seed).digest()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block * 64
    return bytes(out[:size])


# ------------------------------------------------------------------------------------------ shared repo


@dataclass
class Published:
    """A repo built once for the module: two commits on main, a tag, a branch."""

    repo_id: str
    files_v1: dict[str, bytes]  # main at the first upload (tag v1.0)
    files_main: dict[str, bytes]  # main now
    files_dev: dict[str, bytes]  # branch dev
    sha_v1: str
    sha_main: str
    sha_dev: str


@pytest.fixture(scope="module")
def published(hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    mp = pytest.MonkeyPatch()
    mp.setattr(constants, "HF_HUB_DISABLE_XET", True)  # uploads through plain LFS, not Xet
    try:
        api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
        repo_id = hub_server.new_repo_id("published")
        api.create_repo(repo_id)
        folder = tmp_path_factory.mktemp("upload")
        files_v1 = {
            "config.json": json.dumps({"model_type": "bert", "hidden_size": 32}).encode(),
            "README.md": README.encode(),
            "weights/big.bin": _pseudo_random(BIG_SIZE, b"big"),
            "data/notes.txt": b"plain text\n",
        }
        for rel, data in files_v1.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        info_v1 = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Add model files")
        api.create_tag(repo_id, tag="v1.0", revision=info_v1.oid, tag_message="first release")

        api.create_branch(repo_id, branch="dev")
        info_dev = api.upload_file(
            path_or_fileobj=b"only on dev\n", path_in_repo="dev.txt", repo_id=repo_id, revision="dev",
            commit_message="Add dev file",
        )

        new_config = json.dumps({"model_type": "bert", "hidden_size": 64}).encode()
        info_main = api.create_commit(
            repo_id,
            operations=[
                CommitOperationAdd(path_in_repo="config.json", path_or_fileobj=new_config),
                CommitOperationDelete(path_in_repo="data/notes.txt"),
            ],
            commit_message="Update config",
            commit_description="hidden 32 -> 64",
        )
        files_main = {**files_v1, "config.json": new_config}
        del files_main["data/notes.txt"]
        gitattributes = hub_server.files(repo_id)[".gitattributes"]
        yield Published(
            repo_id=repo_id,
            files_v1={".gitattributes": gitattributes, **files_v1},
            files_main={".gitattributes": gitattributes, **files_main},
            files_dev={".gitattributes": gitattributes, **files_v1, "dev.txt": b"only on dev\n"},
            sha_v1=info_v1.oid,
            sha_main=info_main.oid,
            sha_dev=info_dev.oid,
        )
    finally:
        mp.undo()


# ------------------------------------------------------------------------------------------ repos & auth


def test_create_repo_public_private_exists_and_exist_ok(hub_env: HubEnv) -> None:
    api = HfApi()  # endpoint and token come from the patched environment
    assert api.endpoint == hub_env.endpoint
    assert api.whoami()["name"] == "user"

    repo_id = hub_env.hub.new_repo_id("public")
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.endpoint == hub_env.endpoint
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo(repo_id)
    assert excinfo.value.response.status_code == 409
    assert "already created" in str(excinfo.value)
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    assert api.model_info(repo_id).private is False
    assert api.list_repo_files(repo_id) == [".gitattributes"]  # the Hub's initial commit
    assert HfApi(token=False).model_info(repo_id).id == repo_id  # public: visible anonymously

    private_id = hub_env.hub.new_repo_id("private")
    api.create_repo(private_id, private=True)
    assert api.model_info(private_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(private_id)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=OTHER_TOKEN).model_info(private_id)  # another user: 404
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_id, ".gitattributes", token=False)

    dataset_id = hub_env.hub.new_repo_id("dataset")
    api.create_repo(dataset_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="train.csv", repo_id=dataset_id, repo_type="dataset")
    path = hf_hub_download(dataset_id, "train.csv", repo_type="dataset")
    assert Path(path).read_bytes() == b"a,b\n1,2\n"
    assert api.dataset_info(dataset_id).id == dataset_id

    # the module-level functions use huggingface_hub.api, patched by hub_env as well
    module_level_id = hub_env.hub.new_repo_id("module-level")
    assert huggingface_hub.create_repo(module_level_id).repo_id == module_level_id
    huggingface_hub.upload_file(path_or_fileobj=b"hi", path_in_repo="hi.txt", repo_id=module_level_id)
    assert huggingface_hub.list_repo_files(module_level_id) == [".gitattributes", "hi.txt"]

    api.delete_repo(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id)


def test_auth_errors(hub_env: HubEnv) -> None:
    repo_id = hub_env.hub.new_repo_id("auth")
    HfApi().create_repo(repo_id)

    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(token="hf_wrong_token").create_repo(hub_env.hub.new_repo_id("nope"))
    assert excinfo.value.response.status_code == 401
    assert "Invalid credentials" in str(excinfo.value)

    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(token="hf_wrong_token").upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert excinfo.value.response.status_code == 401

    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(token=False).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert excinfo.value.response.status_code == 401

    with pytest.raises(HfHubHTTPError) as excinfo:  # another user may not write to "user/..."
        HfApi(token=OTHER_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert excinfo.value.response.status_code == 403

    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(token="hf_wrong_token").whoami()
    assert excinfo.value.response.status_code == 401
    assert len(hub_env.hub.commit_ids(repo_id)) == 1


def test_not_found_errors(hub_env: HubEnv, published: Published) -> None:
    api = HfApi()
    missing = hub_env.hub.new_repo_id("missing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(missing)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing, "config.json")

    with pytest.raises(RemoteEntryNotFoundError) as excinfo:
        hf_hub_download(published.repo_id, "no_such_file.json")
    assert isinstance(excinfo.value, EntryNotFoundError)  # 2.x: RemoteEntryNotFoundError(EntryNotFoundError)
    # the non-existence is cached under the commit the server reported (X-Repo-Commit)
    no_exist = hub_env.cache_dir / f"models--{published.repo_id.replace('/', '--')}" / ".no_exist"
    assert (no_exist / published.sha_main / "no_such_file.json").exists()

    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(published.repo_id, "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(published.repo_id, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(published.repo_id, revision="0" * 40)
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(published.repo_id, path_in_repo="no/such/folder"))


def test_invalid_readme_metadata_is_rejected(hub_env: HubEnv) -> None:
    repo_id = hub_env.hub.new_repo_id("card")
    api = HfApi()
    api.create_repo(repo_id)
    with pytest.raises(ValueError, match=r"Invalid metadata in README\.md"):
        api.upload_file(path_or_fileobj=b"---\ntags: [unclosed\n---\n", path_in_repo="README.md", repo_id=repo_id)
    with pytest.raises(BadRequestError, match="not supported"):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, create_pr=True)
    assert len(hub_env.hub.commit_ids(repo_id)) == 1


def test_server_down_gives_connection_error(tmp_path: Path) -> None:
    hub = HubServer().start()
    endpoint = hub.endpoint
    api = HfApi(endpoint=endpoint, token=hub.token)
    api.create_repo("user/soon-gone")
    hub.stop()
    with pytest.raises(httpx2.ConnectError) as excinfo:
        api.model_info("user/soon-gone")
    assert str(excinfo.value.request.url).startswith(endpoint)
    with pytest.raises(httpx2.ConnectError):
        HfApi(endpoint=endpoint, token=hub.token).whoami()


def test_a_request_is_on_record_once_its_answer_arrives(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests count ``hub_server.requests`` around a step ("a dry run sends nothing"): a request recorded after its
    client had the answer would be counted in the next step instead (it was, once, in CI). A slow bookkeeping step
    makes that window wide enough to see."""
    record = hub_server._record

    def slow_record(*args: Any) -> None:
        time.sleep(0.05)
        record(*args)

    monkeypatch.setattr(hub_server, "_record", slow_record)
    with httpx2.Client(base_url=hub_server.endpoint) as client:
        for path in ("/api/whoami-v2", "/api/models/user/no-such-repo"):
            before = len(hub_server.requests)
            client.get(path, headers={"authorization": f"Bearer {hub_server.token}"})
            assert len(hub_server.requests) == before + 1, path


# ------------------------------------------------------------------------------------------ uploads & listings


def test_upload_commits_refs_and_info(hub_server: HubServer, published: Published) -> None:
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    repo_id = published.repo_id

    assert sorted(api.list_repo_files(repo_id)) == sorted(published.files_main)
    assert sorted(api.list_repo_files(repo_id, revision="dev")) == sorted(published.files_dev)
    assert sorted(api.list_repo_files(repo_id, revision="v1.0")) == sorted(published.files_v1)

    refs = api.list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": published.sha_main, "dev": published.sha_dev}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", published.sha_v1)]

    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["Update config", "Add model files", "initial commit"]
    assert commits[0].commit_id == published.sha_main and commits[0].message == "hidden 32 -> 64"
    assert commits[0].authors == ["user"] and commits[-1].authors == ["system"]
    assert [c.title for c in api.list_repo_commits(repo_id, revision="dev")][:2] == ["Add dev file", "Add model files"]

    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == published.sha_main and info.private is False
    assert info.card_data is not None and info.card_data.license == "apache-2.0"
    assert {"primal-dual", "test"} <= set(info.tags)
    siblings = {s.rfilename: s for s in info.siblings}
    big = published.files_main["weights/big.bin"]
    assert siblings["weights/big.bin"].size == len(big)
    assert siblings["weights/big.bin"].lfs is not None and siblings["weights/big.bin"].lfs.sha256 == _sha(big)
    assert siblings["config.json"].lfs is None
    assert hub_server.is_lfs(repo_id, "weights/big.bin") and not hub_server.is_lfs(repo_id, "config.json")
    assert api.model_info(repo_id, revision="v1.0").sha == published.sha_v1

    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id)}
    assert top == {".gitattributes": "RepoFile", "README.md": "RepoFile", "config.json": "RepoFile",
                   "weights": "RepoFolder"}
    nested = list(api.list_repo_tree(repo_id, path_in_repo="weights", expand=True))
    assert [e.path for e in nested] == ["weights/big.bin"]
    assert nested[0].last_commit is not None and nested[0].last_commit.oid == published.sha_v1
    assert api.file_exists(repo_id, "config.json") and not api.file_exists(repo_id, "nope.json")
    paths = api.get_paths_info(repo_id, ["config.json", "weights", "nope"], revision="v1.0")
    assert {p.path for p in paths} == {"config.json", "weights"}

    # the server store holds exactly what was uploaded
    assert hub_server.files(repo_id) == published.files_main
    assert hub_server.files(repo_id, "v1.0") == published.files_v1


def test_unchanged_upload_makes_no_commit(hub_server: HubServer, published: Published, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    (tmp_path / "config.json").write_bytes(published.files_main["config.json"])
    info = api.upload_folder(repo_id=published.repo_id, folder_path=tmp_path, commit_message="no-op")
    assert info.oid == published.sha_main  # preupload returned the remote oid: nothing to commit
    assert hub_server.commit_ids(published.repo_id)[0] == published.sha_main


def test_branches_tags_and_pagination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with HubServer(page_size=2) as hub:  # tiny pages: the client must follow the Link headers
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        repo_id = "user/paged"
        api.create_repo(repo_id)
        for i in range(3):
            api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"d/f{i}.txt", repo_id=repo_id,
                            commit_message=f"commit {i}")
        assert [c.title for c in api.list_repo_commits(repo_id)] == [
            "commit 2", "commit 1", "commit 0", "initial commit"]
        assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "d/f0.txt", "d/f1.txt", "d/f2.txt"]
        assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="d")] == ["d/f0.txt", "d/f1.txt",
                                                                                  "d/f2.txt"]
        first = hub.commit_ids(repo_id)[-2]  # "commit 0"
        api.create_tag(repo_id, tag="t0", revision=first)
        api.create_branch(repo_id, branch="from-tag", revision="t0")
        api.create_branch(repo_id, branch="from-tag", exist_ok=True)
        with pytest.raises(HfHubHTTPError) as excinfo:
            api.create_branch(repo_id, branch="from-tag")
        assert excinfo.value.response.status_code == 409
        with pytest.raises(RevisionNotFoundError):
            api.create_branch(repo_id, branch="bad-start", revision="no-such-rev")
        assert sorted(api.list_repo_files(repo_id, revision="from-tag")) == [".gitattributes", "d/f0.txt"]
        with pytest.raises(HfHubHTTPError) as excinfo:
            api.create_tag(repo_id, tag="t0")
        assert excinfo.value.response.status_code == 409
        api.delete_tag(repo_id, tag="t0")
        api.delete_branch(repo_id, branch="from-tag")
        with pytest.raises(HfHubHTTPError) as excinfo:
            api.delete_branch(repo_id, branch="main")
        assert excinfo.value.response.status_code == 403
        refs = api.list_repo_refs(repo_id)
        assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
        api.delete_folder("d", repo_id=repo_id, commit_message="drop d")
        assert api.list_repo_files(repo_id) == [".gitattributes"]
        with pytest.raises(RemoteEntryNotFoundError):
            api.delete_file("d/f0.txt", repo_id=repo_id)


def test_xet_enabled_client_fails_clearly(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HF_HUB_DISABLE_XET the client asks for a Xet token, which this server refuses."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
    repo_id = hub_server.new_repo_id("xet")
    api.create_repo(repo_id)
    with pytest.raises(Exception, match="xet-write-token"):
        api.upload_file(path_or_fileobj=b"\0" * 1000, path_in_repo="w.bin", repo_id=repo_id)
    assert len(hub_server.commit_ids(repo_id)) == 1


# ------------------------------------------------------------------------------------------ downloads


def test_hf_hub_download_by_branch_tag_and_sha(hub_env: HubEnv, published: Published) -> None:
    repo_id = published.repo_id
    assert not any(hub_env.cache_dir.iterdir())
    for revision, expected in (
        (None, published.files_main),
        ("main", published.files_main),
        ("v1.0", published.files_v1),
        (published.sha_v1, published.files_v1),
        ("dev", published.files_dev),
        (published.sha_dev, published.files_dev),
    ):
        path = hf_hub_download(repo_id, "config.json", revision=revision)
        assert Path(path).read_bytes() == expected["config.json"], revision
    assert Path(hf_hub_download(repo_id, "dev.txt", revision="dev")).read_bytes() == b"only on dev\n"
    big = Path(hf_hub_download(repo_id, "weights/big.bin", revision="v1.0"))
    assert big.read_bytes() == published.files_v1["weights/big.bin"]
    # LFS files are stored in the cache under their sha256, regular files under their git sha1
    assert big.resolve().name == _sha(published.files_v1["weights/big.bin"])
    refs = hub_env.cache_dir / f"models--{repo_id.replace('/', '--')}" / "refs"
    assert (refs / "main").read_text() == published.sha_main
    assert (refs / "v1.0").read_text() == published.sha_v1
    # a local_dir download goes through the same endpoints
    local = hf_hub_download(repo_id, "README.md", local_dir=hub_env.home / "local")
    assert Path(local).read_bytes() == README.encode()


def test_snapshot_download_by_branch_tag_and_sha(hub_env: HubEnv, published: Published) -> None:
    repo_id = published.repo_id
    main = snapshot_download(repo_id)
    assert Path(main).name == published.sha_main
    assert _tree_bytes(main) == published.files_main
    assert _tree_bytes(snapshot_download(repo_id, revision="v1.0")) == published.files_v1
    assert _tree_bytes(snapshot_download(repo_id, revision=published.sha_dev)) == published.files_dev
    local = snapshot_download(repo_id, revision="dev", allow_patterns=["*.txt"], local_dir=hub_env.home / "txt")
    assert {k: v for k, v in _tree_bytes(local).items() if not k.startswith(".cache/")} == {
        "dev.txt": b"only on dev\n", "data/notes.txt": b"plain text\n"}
    # offline afterwards: served from the cache
    assert _tree_bytes(snapshot_download(repo_id, revision="v1.0", local_files_only=True)) == published.files_v1


def test_range_requests(hub_server: HubServer, published: Published) -> None:
    import httpx2 as httpx

    big = published.files_main["weights/big.bin"]
    url = f"{hub_server.endpoint}/{published.repo_id}/resolve/main/weights/big.bin"
    with httpx.Client(follow_redirects=True) as client:
        resp = client.get(url, headers={"Range": "bytes=100-199"})
        assert resp.status_code == 206 and resp.content == big[100:200]
        assert resp.headers["Content-Range"] == f"bytes 100-199/{len(big)}"
        resp = client.get(url, headers={"Range": f"bytes={len(big) + 5}-"})
        assert resp.status_code == 416
        head = client.head(url, follow_redirects=False)
        assert head.status_code == 302
        assert head.headers["X-Linked-Etag"].strip('"') == _sha(big)
        assert head.headers["X-Linked-Size"] == str(len(big))
        assert head.headers["X-Repo-Commit"] == published.sha_main


def test_transient_download_error_is_retried(hub_env: HubEnv, published: Published) -> None:
    rule = hub_env.hub.fail_next(r"/resolve/v1\.0/config\.json$", status=503, method="HEAD")
    path = hf_hub_download(published.repo_id, "config.json", revision="v1.0")
    assert Path(path).read_bytes() == published.files_v1["config.json"]
    assert rule.hits == 1


# ------------------------------------------------------------------------------------------ faults


def test_interrupted_commit_then_retry_makes_one_commit(hub_env: HubEnv, tmp_path: Path) -> None:
    hub = hub_env.hub
    api = HfApi()
    repo_id = hub.new_repo_id("interrupted")
    api.create_repo(repo_id)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "weights.bin").write_bytes(_pseudo_random(300_000, b"w"))  # *.bin: LFS per .gitattributes
    before = hub.commit_ids(repo_id)

    # 1) the connection drops while the commit is sent: clear error, nothing committed
    hub.fail_next(r"/commit/main$", disconnect=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload")
    assert hub.commit_ids(repo_id) == before

    # 2) the server fails the commit with a 500: HfHubHTTPError with the server message
    hub.fail_next(r"/commit/main$", status=500, message="storage backend unavailable")
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload")
    assert excinfo.value.response.status_code == 500
    assert "storage backend unavailable" in str(excinfo.value)
    assert hub.commit_ids(repo_id) == before

    # 3) the retry succeeds: exactly one new commit with the files
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload")
    after = hub.commit_ids(repo_id)
    assert after == [info.oid, *before]
    assert hub.files(repo_id)["weights.bin"] == (folder / "weights.bin").read_bytes()
    assert hub.is_lfs(repo_id, "weights.bin")


def test_lost_commit_response_then_retry_is_a_noop(hub_env: HubEnv, tmp_path: Path) -> None:
    hub = hub_env.hub
    api = HfApi()
    repo_id = hub.new_repo_id("lost-response")
    api.create_repo(repo_id)
    (tmp_path / "a.txt").write_text("a")
    before = hub.commit_ids(repo_id)
    hub.fail_next(r"/commit/main$", disconnect=True, when="after")  # the commit lands, the answer is lost
    with pytest.raises(httpx2.RemoteProtocolError):
        api.upload_folder(repo_id=repo_id, folder_path=tmp_path, commit_message="Upload a")
    landed = hub.commit_ids(repo_id)
    assert len(landed) == len(before) + 1
    info = api.upload_folder(repo_id=repo_id, folder_path=tmp_path, commit_message="Upload a")
    assert info.oid == landed[0]  # unchanged files: the client skips the empty commit
    assert hub.commit_ids(repo_id) == landed


def test_dropped_lfs_upload_is_retried(hub_env: HubEnv) -> None:
    hub = hub_env.hub
    api = HfApi()
    repo_id = hub.new_repo_id("lfs-retry")
    api.create_repo(repo_id)
    data = _pseudo_random(200_000, b"lfs")
    rule = hub.fail_next(r"^/lfs/upload/", disconnect=True, method="PUT")  # cut after 64 KiB of the body
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo_id)
    assert rule.hits == 1
    assert hub.files(repo_id)["model.safetensors"] == data and hub.is_lfs(repo_id, "model.safetensors")
    assert len(hub.commit_ids(repo_id)) == 2


def test_stale_parent_commit_is_rejected(hub_env: HubEnv) -> None:
    api = HfApi()
    repo_id = hub_env.hub.new_repo_id("parent")
    api.create_repo(repo_id)
    first = hub_env.hub.commit_ids(repo_id)[0]
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_file(path_or_fileobj=b"2", path_in_repo="two.txt", repo_id=repo_id, parent_commit=first)
    assert excinfo.value.response.status_code == 412


# ------------------------------------------------------------------------------------------ subprocess clients


def test_subprocess_client_uses_environment_only(hub_server: HubServer, tmp_path: Path) -> None:
    repo_id = hub_server.new_repo_id("subprocess")
    env = hub_server.env(tmp_path)
    result = run_client_json(
        f"""
        import json, os
        from huggingface_hub import HfApi, hf_hub_download, constants
        assert constants.ENDPOINT == os.environ["HF_ENDPOINT"] and constants.HF_HUB_DISABLE_XET
        api = HfApi()
        api.create_repo({repo_id!r})
        api.upload_file(path_or_fileobj=b"x" * 64, path_in_repo="x.bin", repo_id={repo_id!r})
        path = hf_hub_download({repo_id!r}, "x.bin")
        print(json.dumps({{"user": api.whoami()["name"], "path": path, "data": open(path).read()}}))
        """,
        env,
    )
    assert result["user"] == "user" and result["data"] == "x" * 64
    assert result["path"].startswith(env["HF_HUB_CACHE"])
    assert hub_server.is_lfs(repo_id, "x.bin")  # *.bin is an LFS pattern of the default .gitattributes


@pytest.mark.slow  # a fresh interpreter loading the pushed model
def test_transformers_push_to_hub_and_from_pretrained(hub_env: HubEnv, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64,
    )
    model = transformers.BertModel(config).eval()
    input_ids = [[2, 7, 11, 5, 3, 9]]
    with torch.no_grad():
        expected = model(torch.tensor(input_ids)).last_hidden_state

    repo_id = hub_env.hub.new_repo_id("tiny-bert")
    info = model.push_to_hub(repo_id, commit_message="Upload tiny BERT")  # in process (patched by hub_env)
    files = HfApi().list_repo_files(repo_id)
    assert {"config.json", "model.safetensors"} <= set(files)
    assert hub_env.hub.is_lfs(repo_id, "model.safetensors")
    assert HfApi().list_repo_commits(repo_id)[0].commit_id == info.oid

    loader_env = hub_env.hub.env(tmp_path / "loader")  # a fresh, empty cache in a fresh interpreter
    assert not any(Path(loader_env["HF_HUB_CACHE"]).iterdir())
    out = run_client_json(
        f"""
        import json, torch, transformers
        model = transformers.AutoModel.from_pretrained({repo_id!r}).eval()
        assert type(model).__name__ == "BertModel", type(model)
        with torch.no_grad():
            out = model(torch.tensor({input_ids!r})).last_hidden_state
        print(json.dumps(out.tolist()))
        """,
        loader_env,
    )
    assert torch.equal(torch.tensor(out, dtype=expected.dtype), expected)
    cached = Path(loader_env["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    assert (cached / "snapshots" / info.oid / "model.safetensors").exists()


def test_env_helper(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = hub_server.env(tmp_path)
    assert env["HF_ENDPOINT"] == hub_server.endpoint and env["HF_TOKEN"] == hub_server.token
    assert env["HF_HUB_DISABLE_XET"] == "1"
    assert Path(env["HF_HOME"]).is_dir()
    for var in ("HF_HUB_CACHE", "HF_MODULES_CACHE"):
        assert Path(env[var]).is_dir() and not any(Path(env[var]).iterdir())
    assert "HF_HUB_OFFLINE" not in env
    assert "HF_TOKEN" not in hub_server.env(tmp_path / "anon", token=None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # inherited offline switches are dropped by run_client
    proc = run_client("import os; print(os.environ.get('HF_HUB_OFFLINE'), os.environ['HF_ENDPOINT'])", env)
    assert proc.stdout.split() == ["None", hub_server.endpoint]
