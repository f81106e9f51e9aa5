"""``hf-primaldual-demo MODEL --space REPO``: the Space folder written and pushed through the model push's client
(`hub.upload_files`) to the test Hub server, and the pushed Space run as the Space runs it: its app.py, with the
package copy beside it, loading the model from the Hub."""

from __future__ import annotations

import json
import sys

import gradio
import pytest
import torch
import transformers
from huggingface_hub import HfApi, SpaceCard

from hf_primaldual.cli.demo import main as demo_main
from hf_primaldual.data import SHIPPED_UEA_DIR
from hf_primaldual.demo import classify_series, load_demo_model, read_series_file
from hf_primaldual.hub import push_output_folder

VOWELS_TEST = SHIPPED_UEA_DIR / "JapaneseVowels" / "JapaneseVowels_TEST.ts"


@pytest.fixture
def pushed_space(hub_env, vowels_checkpoint, tmp_path):
    """(model repo id, Space repo id, the Space folder as written) after the command pushed the Space."""
    model_id = hub_env.hub.new_repo_id("jv-bn-sh")
    push_output_folder(vowels_checkpoint, model_id)
    space_id = hub_env.hub.new_repo_id("jv-demo")
    folder = tmp_path / "space"
    assert demo_main([model_id, "--space", space_id, "--space_folder", str(folder)]) == 0
    return model_id, space_id, folder


@pytest.mark.slow  # trains the session's checkpoint when first
def test_the_space_is_pushed_with_its_metadata_and_the_package(pushed_space, hub_env):
    model_id, space_id, folder = pushed_space
    pushed = hub_env.hub.files(space_id, repo_type="space")
    written = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert {path: data for path, data in pushed.items() if path != ".gitattributes"} == written
    card = SpaceCard(pushed["README.md"].decode())
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
    assert card.data.models == [model_id]
    assert card.data.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"  # numpy 2.4 needs 3.11+
    assert HfApi().space_info(space_id).sdk == "gradio"
    requirements = pushed["requirements.txt"].decode().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert f"transformers=={transformers.__version__}" in requirements
    assert not [line for line in requirements if line.startswith("gradio")]  # sdk_version installs it
    assert f"build_demo({model_id!r}" in pushed["app.py"].decode()
    assert "hf_primaldual/demo.py" in pushed and "hf_primaldual/modeling_primaldual_timeseries.py" in pushed
    assert not [path for path in pushed if "resources/" in path or "__pycache__" in path]


def test_a_local_folder_is_not_a_space_model(tmp_path, capsys):
    model = tmp_path / "outputs" / "model"  # refused for being a local path, before anything is read
    model.mkdir(parents=True)
    status = demo_main([str(model), "--space", "user/demo", "--space_folder", str(tmp_path), "--dry_run"])
    assert status == 2
    assert "push the model first (hf-primaldual-push" in capsys.readouterr().err
    assert not (tmp_path / "app.py").exists()


@pytest.mark.slow
def test_the_pushed_space_runs_from_its_own_folder(pushed_space, hub_env, tmp_path):
    model_id, space_id, _ = pushed_space
    space = tmp_path / "checkout"
    HfApi().snapshot_download(space_id, repo_type="space", local_dir=space)
    expected = classify_series(load_demo_model(model_id), read_series_file(VOWELS_TEST).series[4])
    # the Space's own interpreter: app.py imports the package copy beside it and loads the model from the Hub
    answer = json.loads(hub_env.run(f"""
        import json
        from pathlib import Path
        import hf_primaldual, app
        from gradio_client import Client, handle_file
        assert Path(hf_primaldual.__file__).resolve().parent == Path.cwd().resolve() / "hf_primaldual", hf_primaldual.__file__
        app.demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        ranking = Client(app.demo.local_url, verbose=False).predict(
            handle_file({str(VOWELS_TEST)!r}), 5, 1, api_name="/classify_series")[0]
        app.demo.close()
        print(json.dumps(ranking))
    """, cwd=space, timeout=300).stdout.strip().splitlines()[-1])
    assert answer["label"] == next(iter(expected.ranking))
    shown = {item["label"]: item["confidence"] for item in answer["confidences"]}
    assert shown == pytest.approx({label: expected.ranking[label] for label in shown}, abs=1e-6)
