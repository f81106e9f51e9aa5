"""Set-up for the model tests: the markers that transformers' common tests (helpers/transformers_tests.py) carry.

transformers registers them in its own conftest.py, which its sdist does not ship; under `--strict-markers` an
unregistered marker fails the collection."""

import pytest

TRANSFORMERS_MARKERS = {
    "accelerate_tests": "transformers: needs accelerate",
    "flash_attn_test": "transformers: tests flash attention",
    "flash_attn_3_test": "transformers: tests flash attention 3",
    "flash_attn_4_test": "transformers: tests flash attention 4",
    "torch_compile_test": "transformers: tests torch.compile",
    "torch_export_test": "transformers: tests torch.export",
    "is_training_test": "transformers: a training test",
    "is_pipeline_test": "transformers: a pipeline test",
    "order": "transformers: run order",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in TRANSFORMERS_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
