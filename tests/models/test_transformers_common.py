"""transformers' own common model tests on both families, for every attention type.

`ModelTesterMixin` (tests/test_modeling_common.py) and `ConfigTester` (tests/test_configuration_common.py) of
the installed transformers, fetched from its sdist by `transformers_tests.py`, run the way transformers tests a
model of its own: a model tester per family written after transformers' `ViTModelTester`
(tests/models/vit/test_modeling_vit.py) and, for the series, its time-series tests (PatchTST), small random
configs, and one test class per family and `attention_type`: 2 x 9 = 18 classes, `PrimalDualViT<Type>ModelTest`
and `PrimalDualTimeSeries<Type>ModelTest`.

Flags. Only these are set (everything else keeps ModelTesterMixin's default, so its tests run):
- `test_resize_embeddings = False`, both families: transformers' ViT test sets it; neither family has a
  vocabulary (patches and series values are projected, not looked up), so there is no token embedding to resize.
  (PatchTST's test leaves it True but skips test_resize_tokens_embeddings, "we have no tokens embeddings".)
- `test_model_get_set_embeddings` is overridden as transformers' ViT test does: the input embedding is a module
  (a patch or value projection), not an `nn.Embedding`, and may not be replaced by an `nn.Embedding(10, 10)`.
- `test_can_init_all_missing_weights_before_2023 = True`, both families: without it transformers skips
  test_can_init_all_missing_weights for any model it dates before 2023, and it dates a model by a
  "# Copyright YYYY" line in its config file, which the package's files lack (year 0). The models are from 2023
  on, where transformers runs the test for every model; the flag makes it run.
- `test_load_with_mismatched_shapes` is rewritten for the series (PrimalDualTimeSeries classes only): transformers
  runs it on every AutoModelForSequenceClassification model, which it assumes is a text model (it changes
  `vocab_size` and feeds `input_ids`); the series classifier is registered there (registration.py) but has no
  vocabulary, so the same checks use the number of input channels (the size the value projection takes) instead.
- The model testers leave `attn_implementation` at the models' default ("sdpa"), the implementation a saved model
  loads back with. transformers' ViTModelTester builds "eager" configs, but `save_pretrained` does not keep the
  implementation, so test_save_load would compare an eager forward with an sdpa one at `assert_close`'s
  float32 default (1e-5): for `bn_sh` at initialisation, at this tester's size, the two differ by more in 14 of 300
  forwards (up to 6e-5), although each is as close to a float64 forward as the other (BN+SH divides the
  full-resolution queries by the standard deviation of the pooled keys, a handful per example here, which
  amplifies rounding several times over `bn` or `sh` alone). The tests that need eager ask for it themselves
  (test_attention_outputs, test_retain_grad_hidden_states_attentions, ...), and eager against sdpa is
  test_eager_matches_sdpa_inference_*'s job, at transformers' tolerances.
Not set, on purpose: `has_attentions` (both families return attentions), `test_missing_keys`,
`test_mismatched_shapes`, `is_encoder_decoder` (defaults are right), `test_torch_exportable` (ViT sets it to its
default, True). No test is skipped here.

What does not run, and why:
- the export tests: ModelTesterMixin's base `ExportTesterMixin` lives in tests/exporters, which the sdist lacks
  (stubbed empty); `GenerationTesterMixin` likewise (the models cannot generate, so it would not apply anyway).
- `PipelineTesterMixin`: its tiny-model registry is not in the sdist, and transformers has no time-series pipeline.
- tests that transformers itself skips here: `@slow` ones (unless RUN_SLOW=1), GPU / multi-GPU / flash-attention /
  DeepSpeed / bitsandbytes ones on a CPU machine, composite-model and mixture-of-experts tests (not such models).

The eager-vs-sdpa tests must run: `test_eager_matches_sdpa_inference_*` (25 parameterisations),
`test_sdpa_can_dispatch_non_composite_models` and `test_can_set_attention_dynamically` skip themselves in
transformers when the model does not declare `_supports_sdpa` (or cannot return attentions); here such a skip
is a failure, with transformers' reason (see `MUST_RUN`).
"""

from __future__ import annotations

import copy
import re
import tempfile
import unittest

import pytest
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.models.auto import modeling_auto
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from hf_primaldual import (
    ATTENTION_TYPES,
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualTimeSeriesModel,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
    PrimalDualViTModel,
)
from helpers.transformers_tests import TransformersTestsUnavailable, load_common_tests

pytestmark = pytest.mark.slow  # thousands of tests: about half the suite's time

# The nine types, spelled out: a type added to the package without classes here fails test_every_type_is_tested.
TESTED_TYPES = ("softmax", "linear", "sparse", "bn", "sh", "bn_sh", "linear_bn", "linear_sh", "linear_bn_sh")

# Tests that transformers skips for a model without SDPA support (or that cannot return attentions), which must
# run for these models: eager vs sdpa outputs, loading with either, switching with set_attn_implementation.
MUST_RUN = re.compile(
    r"^test_(eager_matches_sdpa_inference_.*|sdpa_can_dispatch_non_composite_models|can_set_attention_dynamically)$"
)

# ModelTesterMixin recognises base models and task heads by class name in these tables (to add labels, to pick
# the base model, ...). registration.py registers the models with the Auto classes, which leaves these name
# tables alone, so the tests add the names for their duration. Keys no CONFIG_MAPPING_NAMES entry has: the lazy
# Auto mappings built on these tables ignore them.
MAPPING_NAMES = {
    "MODEL_MAPPING_NAMES": {
        PrimalDualViTConfig.model_type: PrimalDualViTModel.__name__,
        PrimalDualTimeSeriesConfig.model_type: PrimalDualTimeSeriesModel.__name__,
    },
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES": {
        PrimalDualViTConfig.model_type: PrimalDualViTForImageClassification.__name__,
    },
    # The time-series classifier is registered with AutoModelForSequenceClassification (registration.py).
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": {
        PrimalDualTimeSeriesConfig.model_type: PrimalDualTimeSeriesForClassification.__name__,
    },
}


@pytest.fixture(scope="module", autouse=True)
def model_names_in_transformers_tables():
    added = []
    for table_name, entries in MAPPING_NAMES.items():
        table = getattr(modeling_auto, table_name)
        for model_type, class_name in entries.items():
            if model_type not in table:
                table[model_type] = class_name
                added.append((table, model_type))
    yield
    for table, model_type in added:
        del table[model_type]


def test_every_type_is_tested():
    assert set(ATTENTION_TYPES) == set(TESTED_TYPES)


try:
    common, configuration_common = load_common_tests()
except TransformersTestsUnavailable as error:
    # One loud failure with the reason instead of a collection error, which would stop the whole suite.
    _unavailable = str(error)

    def test_transformers_common_tests_available():
        pytest.fail(_unavailable, pytrace=False)

    common = None

if common is not None:
    _zero_init = common._config_zero_init

    def _config_zero_init_keeping_bn_use_std(config):
        """transformers' helper sets every attribute with "_std" in its name (an initializer's standard deviation)
        to 1e-10; bn_use_std is Attention-BN's switch, which the settings check holds to true or false."""
        zeroed = _zero_init(config)
        if hasattr(config, "bn_use_std"):
            zeroed.bn_use_std = config.bn_use_std
        return zeroed

    common._config_zero_init = _config_zero_init_keeping_bn_use_std
    ModelTesterMixin = common.ModelTesterMixin
    floats_tensor = common.floats_tensor
    ids_tensor = common.ids_tensor
    random_attention_mask = common.random_attention_mask
    ConfigTester = configuration_common.ConfigTester

    class PrimalDualViTModelTester:
        """transformers' ViTModelTester with the attention fields; a smaller image (17 tokens instead of 226)."""

        def __init__(
            self,
            parent,
            attention_type,
            batch_size=13,
            image_size=16,
            patch_size=4,
            num_channels=3,
            is_training=True,
            use_labels=True,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            type_sequence_label_size=10,
            initializer_range=0.02,
            encoder_stride=2,
            attention_window=2,  # `sparse`: a window narrower than the 17 tokens
        ):
            self.parent = parent
            self.attention_type = attention_type
            self.batch_size = batch_size
            self.image_size = image_size
            self.patch_size = patch_size
            self.num_channels = num_channels
            self.is_training = is_training
            self.use_labels = use_labels
            self.hidden_size = hidden_size
            self.num_hidden_layers = num_hidden_layers
            self.num_attention_heads = num_attention_heads
            self.intermediate_size = intermediate_size
            self.hidden_act = hidden_act
            self.hidden_dropout_prob = hidden_dropout_prob
            self.attention_probs_dropout_prob = attention_probs_dropout_prob
            self.type_sequence_label_size = type_sequence_label_size
            self.initializer_range = initializer_range
            self.encoder_stride = encoder_stride
            self.attention_window = attention_window

            # as in ViT, the sequence is the patches plus the [CLS] token
            num_patches = (image_size // patch_size) ** 2
            self.seq_length = num_patches + 1

        def prepare_config_and_inputs(self):
            pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
            labels = ids_tensor([self.batch_size], self.type_sequence_label_size) if self.use_labels else None
            return self.get_config(), pixel_values, labels

        def get_config(self):
            return PrimalDualViTConfig(
                image_size=self.image_size,
                patch_size=self.patch_size,
                num_channels=self.num_channels,
                hidden_size=self.hidden_size,
                num_hidden_layers=self.num_hidden_layers,
                num_attention_heads=self.num_attention_heads,
                intermediate_size=self.intermediate_size,
                hidden_act=self.hidden_act,
                hidden_dropout_prob=self.hidden_dropout_prob,
                attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                is_decoder=False,
                initializer_range=self.initializer_range,
                encoder_stride=self.encoder_stride,
                attention_type=self.attention_type,
                attention_window=self.attention_window,
            )

        def create_and_check_model(self, config, pixel_values, labels):
            model = PrimalDualViTModel(config=config).eval()
            result = model(pixel_values)
            self.parent.assertEqual(
                result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size)
            )

        def create_and_check_for_image_classification(self, config, pixel_values, labels):
            config.num_labels = self.type_sequence_label_size
            model = PrimalDualViTForImageClassification(config).eval()
            result = model(pixel_values, labels=labels)
            self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))

            # greyscale images
            config.num_channels = 1
            model = PrimalDualViTForImageClassification(config).eval()
            pixel_values = floats_tensor([self.batch_size, 1, self.image_size, self.image_size])
            result = model(pixel_values)
            self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))

        def prepare_config_and_inputs_for_common(self):
            config, pixel_values, _ = self.prepare_config_and_inputs()
            return config, {"pixel_values": pixel_values}

    class PrimalDualTimeSeriesModelTester:
        """After transformers' PatchTSTModelTester: `(batch, time, channels)` values, here with an attention mask
        (random padding, as the text models' testers do) since the model takes one."""

        def __init__(
            self,
            parent,
            attention_type,
            batch_size=13,
            seq_length=12,
            max_sequence_length=16,  # longer than the series: the flattened classifier input is padded
            num_input_channels=3,
            is_training=True,
            use_labels=True,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=32,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            num_labels=3,
            initializer_range=0.02,
            attention_window=2,  # `sparse`: a window narrower than the series
        ):
            self.parent = parent
            self.attention_type = attention_type
            self.batch_size = batch_size
            self.seq_length = seq_length
            self.max_sequence_length = max_sequence_length
            self.num_input_channels = num_input_channels
            self.is_training = is_training
            self.use_labels = use_labels
            self.hidden_size = hidden_size
            self.num_hidden_layers = num_hidden_layers
            self.num_attention_heads = num_attention_heads
            self.intermediate_size = intermediate_size
            self.hidden_act = hidden_act
            self.hidden_dropout_prob = hidden_dropout_prob
            self.attention_probs_dropout_prob = attention_probs_dropout_prob
            self.num_labels = num_labels
            self.initializer_range = initializer_range
            self.attention_window = attention_window

        def prepare_config_and_inputs(self):
            past_values = floats_tensor([self.batch_size, self.seq_length, self.num_input_channels])
            attention_mask = random_attention_mask([self.batch_size, self.seq_length])
            labels = ids_tensor([self.batch_size], self.num_labels) if self.use_labels else None
            return self.get_config(), past_values, attention_mask, labels

        def get_config(self):
            return PrimalDualTimeSeriesConfig(
                num_input_channels=self.num_input_channels,
                max_sequence_length=self.max_sequence_length,
                hidden_size=self.hidden_size,
                num_hidden_layers=self.num_hidden_layers,
                num_attention_heads=self.num_attention_heads,
                intermediate_size=self.intermediate_size,
                hidden_act=self.hidden_act,
                hidden_dropout_prob=self.hidden_dropout_prob,
                attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                num_labels=self.num_labels,
                initializer_range=self.initializer_range,
                attention_type=self.attention_type,
                attention_window=self.attention_window,
            )

        def create_and_check_model(self, config, past_values, attention_mask, labels):
            model = PrimalDualTimeSeriesModel(config).eval()
            result = model(past_values, attention_mask=attention_mask)
            self.parent.assertEqual(
                result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size)
            )

        def create_and_check_for_sequence_classification(self, config, past_values, attention_mask, labels):
            model = PrimalDualTimeSeriesForClassification(config).eval()
            result = model(past_values, attention_mask=attention_mask, labels=labels)
            self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))
            self.parent.assertEqual(result.loss.shape, ())

        def prepare_config_and_inputs_for_common(self):
            config, past_values, attention_mask, _ = self.prepare_config_and_inputs()
            return config, {"past_values": past_values, "attention_mask": attention_mask}

    class PrimalDualCommonTests(ModelTesterMixin):
        """What both families share. Not a TestCase itself: the classes below add `unittest.TestCase`."""

        attention_type: str
        # No vocabulary: patches / series values are projected, not looked up (transformers' ViT test sets it).
        test_resize_embeddings = False
        # test_can_init_all_missing_weights dates a model by the "# Copyright YYYY" line of its config file and
        # skips models from before 2023 ("Not a prioritized model for now") unless this is set. The package's
        # config files have no such line, so the model would count as year 0; it is from 2023 on (the paper is
        # ICLR 2023), where transformers runs the test for every model.
        test_can_init_all_missing_weights_before_2023 = True

        def skipTest(self, reason):
            if MUST_RUN.match(self._testMethodName):
                self.fail(f"{self._testMethodName} must run, but transformers' test skips it: {reason}")
            super().skipTest(reason)

        def test_config(self):
            self.config_tester.run_common_tests()

        def test_model_get_set_embeddings(self):
            # As transformers' ViT test: the input embedding is a module (patch / value projection), not an
            # nn.Embedding that an nn.Embedding(10, 10) could replace.
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            for model_class in self.all_model_classes:
                model = model_class(config)
                self.assertIsInstance(model.get_input_embeddings(), nn.Module)
                x = model.get_output_embeddings()
                self.assertTrue(x is None or isinstance(x, nn.Linear))

        def test_model(self):
            self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    class PrimalDualViTCommonTests(PrimalDualCommonTests):
        all_model_classes = (PrimalDualViTModel, PrimalDualViTForImageClassification)

        def setUp(self):
            self.model_tester = PrimalDualViTModelTester(self, self.attention_type)
            # As ViT's test (which uses hidden_size=37, a non-default value); 36: divisible by the default 3 heads.
            self.config_tester = ConfigTester(
                self,
                config_class=PrimalDualViTConfig,
                has_text_modality=False,
                hidden_size=36,
                attention_type=self.attention_type,
            )

        def test_for_image_classification(self):
            self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    class PrimalDualTimeSeriesCommonTests(PrimalDualCommonTests):
        all_model_classes = (PrimalDualTimeSeriesModel, PrimalDualTimeSeriesForClassification)

        def setUp(self):
            self.model_tester = PrimalDualTimeSeriesModelTester(self, self.attention_type)
            self.config_tester = ConfigTester(
                self,
                config_class=PrimalDualTimeSeriesConfig,
                has_text_modality=False,
                num_input_channels=self.model_tester.num_input_channels,
                attention_type=self.attention_type,
            )

        def test_load_with_mismatched_shapes(self):
            # transformers' version is written for text models, the only AutoModelForSequenceClassification models it
            # knows: it changes `vocab_size` and feeds `input_ids`, which a series model does not have (no mismatch
            # arises, "RuntimeError not raised"). The same checks, with the series' input size (the channels, what
            # the value projection takes) in the place of the vocabulary.
            config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
            model_class = PrimalDualTimeSeriesForClassification
            with tempfile.TemporaryDirectory() as tmp_dir:
                model_class(config).save_pretrained(tmp_dir)
                config = copy.deepcopy(config)
                config.num_input_channels = self.model_tester.num_input_channels + 2
                # Fails when we don't set ignore_mismatched_sizes=True
                with self.assertRaises(RuntimeError):
                    AutoModelForSequenceClassification.from_pretrained(tmp_dir, num_labels=42)
                with self.assertRaises(RuntimeError):
                    AutoModel.from_pretrained(tmp_dir, config=config)

                logger = logging.get_logger("transformers.modeling_utils")
                with CaptureLogger(logger) as cl:
                    new_model = AutoModelForSequenceClassification.from_pretrained(
                        tmp_dir, num_labels=42, ignore_mismatched_sizes=True
                    )
                self.assertIn("Reinit due to size mismatch", cl.out)
                logits = new_model(**self._prepare_for_class(inputs_dict, model_class)).logits
                self.assertEqual(logits.shape[1], 42)

                with CaptureLogger(logger) as cl:
                    new_model_without_prefix = AutoModel.from_pretrained(
                        tmp_dir, config=config, ignore_mismatched_sizes=True
                    )
                self.assertIn("Reinit due to size mismatch", cl.out)
                new_model_without_prefix(floats_tensor([2, 8, config.num_input_channels]))

        def test_for_sequence_classification(self):
            self.model_tester.create_and_check_for_sequence_classification(
                *self.model_tester.prepare_config_and_inputs()
            )

    def _class_name(family: str, attention_type: str) -> str:
        return f"PrimalDual{family}{''.join(part.capitalize() for part in attention_type.split('_'))}ModelTest"

    # One test class per family and attention type, e.g. PrimalDualViTBnShModelTest.
    for _attention_type in TESTED_TYPES:
        for _family, _base in (("ViT", PrimalDualViTCommonTests), ("TimeSeries", PrimalDualTimeSeriesCommonTests)):
            _name = _class_name(_family, _attention_type)
            globals()[_name] = type(
                _name,
                (_base, unittest.TestCase),
                {"attention_type": _attention_type, "__module__": __name__, "__qualname__": _name},
            )
    del _attention_type, _family, _base, _name
