"""The attention tests that take long on a 2-core CPU carry `slow` (left out by `pytest -m "not slow"`).

Marked here by name, not in the modules, which stay as the attention family's own tests."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SLOW = {
    "test_attention.py": {
        "test_training_attention_dropout_is_unbiased",  # 3,000 dropout draws per type, to average them
        "test_the_environment_selects_the_path_before_for_a_whole_run",  # two fresh interpreters
        "test_constant_key_features_and_large_inputs_stay_finite_in_every_precision",  # types x dtypes x paths
    },
    "test_attention_interface.py": {
        "test_registered_attention_matches_the_reference_on_stock_models",  # 8 models x every type, in float64
        "test_generation_with_the_cache_gives_the_tokens_of_the_full_forward",  # generation, token by token
        "test_a_stock_vit_fine_tunes_with_the_trainer_under_attention_bn",  # a training run
    },
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == HERE and getattr(item, "originalname", item.name) in SLOW.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
