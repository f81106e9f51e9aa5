"""The download half of the clients against a third-party Hub mirror: olah serving local git repos.

olah (``pip install olah``) runs offline over git repositories built here with ``git``; the real
``hf_hub_download`` / ``snapshot_download`` / ``HfApi`` must fetch exactly the committed bytes, by
branch, tag and commit sha, including a git-lfs file.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("olah", reason="olah is not installed (pip install olah)")
if shutil.which("git") is None:  # pragma: no cover - git is part of the base image
    pytest.skip("git is not installed", allow_module_level=True)

from huggingface_hub import HfApi, hf_hub_download, snapshot_download

from helpers.olah_mirror import OlahMirror

REPO_ID = "mirror-org/tiny-model"


@dataclass
class Mirrored:
    mirror: OlahMirror
    sha_v1: str
    sha_main: str
    files_v1: dict[str, bytes]
    files_main: dict[str, bytes]


def _tree_bytes(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    base = tmp_path_factory.mktemp("olah")
    weights = hashlib.sha512(b"weights").digest() * 2048  # 128 KiB, committed as a git-lfs pointer
    v1 = {
        "config.json": b'{"model_type": "bert", "hidden_size": 32}',
        "README.md": b"---\nlicense: mit\n---\n# Mirrored model\n",
        "sub/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
    }
    mirror = OlahMirror(base)
    sha_v1 = mirror.add_repo(REPO_ID, v1, lfs={"model.bin": weights}, message="Add model", tag="v1")
    sha_main = mirror.add_repo(REPO_ID, {"config.json": b'{"model_type": "bert", "hidden_size": 64}'},
                               message="Update config")
    gitattributes = (mirror.repo_dir(REPO_ID) / ".gitattributes").read_bytes()
    files_v1 = {**v1, "model.bin": weights, ".gitattributes": gitattributes}
    files_main = {**files_v1, "config.json": b'{"model_type": "bert", "hidden_size": 64}'}
    with mirror:
        yield Mirrored(mirror, sha_v1, sha_main, files_v1, files_main)


def test_olah_hf_hub_download(mirrored: Mirrored, tmp_path: Path) -> None:
    endpoint = mirrored.mirror.endpoint
    for revision, expected in (
        (None, mirrored.files_main),
        ("v1", mirrored.files_v1),
        (mirrored.sha_v1, mirrored.files_v1),
    ):
        path = hf_hub_download(REPO_ID, "config.json", revision=revision, endpoint=endpoint,
                               cache_dir=tmp_path, token=False)
        assert Path(path).read_bytes() == expected["config.json"], revision
    weights = hf_hub_download(REPO_ID, "model.bin", endpoint=endpoint, cache_dir=tmp_path, token=False)
    assert Path(weights).read_bytes() == mirrored.files_main["model.bin"]
    nested = hf_hub_download(REPO_ID, "sub/vocab.txt", revision="v1", endpoint=endpoint, cache_dir=tmp_path,
                             token=False)
    assert Path(nested).read_bytes() == mirrored.files_v1["sub/vocab.txt"]


def test_olah_snapshot_download_and_api(mirrored: Mirrored, tmp_path: Path) -> None:
    endpoint = mirrored.mirror.endpoint
    main = snapshot_download(REPO_ID, endpoint=endpoint, cache_dir=tmp_path, token=False)
    assert Path(main).name == mirrored.sha_main
    assert _tree_bytes(main) == mirrored.files_main
    tagged = snapshot_download(REPO_ID, revision="v1", endpoint=endpoint, cache_dir=tmp_path, token=False)
    assert Path(tagged).name == mirrored.sha_v1
    assert _tree_bytes(tagged) == mirrored.files_v1

    api = HfApi(endpoint=endpoint, token=False)
    refs = api.list_repo_refs(REPO_ID)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": mirrored.sha_main}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": mirrored.sha_v1}
    assert api.model_info(REPO_ID, revision="main").sha == mirrored.sha_main
    assert sorted(api.list_repo_files(REPO_ID, revision="v1")) == sorted(mirrored.files_v1)
