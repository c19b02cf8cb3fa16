"""transformers' own common model tests (`ModelTesterMixin` of the installed release) on every Sora head.

The same mixin runs on stock BERT and Llama in the same process, with testers of the same sizes, so a test that
fails for Sora only shows up as a difference in counts (`pytest -rA tests/test_transformers_common.py`). The tests
come from transformers' source distribution of the installed version, fetched by `.ci/transformers-tests` (`make
test` does it); without them the module is skipped, unless `SORA_REQUIRE_TRANSFORMERS_TESTS=1` (set by `make
test`), where it fails. Sora declares no skips of its own: the only overrides are the tester's inputs, as BERT's
test file writes them.
"""

from __future__ import annotations

import glob
import os
import sys
import unittest

import pytest
import torch
import transformers
from transformers.models.auto import modeling_auto

import sora_hf  # noqa: F401  (registers Sora with the Auto classes)
from sora_hf import SoraConfig
from sora_hf.modeling_sora import (
    SoraDecoderModel,
    SoraForCausalLM,
    SoraForMaskedLM,
    SoraForMultipleChoice,
    SoraForPreTraining,
    SoraForQuestionAnswering,
    SoraForSentenceEmbedding,
    SoraForSequenceClassification,
    SoraForTokenClassification,
    SoraModel,
)


def _common_tests_root() -> str | None:
    explicit = os.environ.get("SORA_TRANSFORMERS_TESTS")
    if explicit:
        return explicit
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pattern = os.path.join(here, ".venv*", "transformers-tests", transformers.__version__)
    found = [path for path in glob.glob(pattern) if os.path.isdir(os.path.join(path, "transformers_tests"))]
    return found[0] if found else None


_root = _common_tests_root()
if _root is None:
    if os.environ.get("SORA_REQUIRE_TRANSFORMERS_TESTS") == "1":
        raise RuntimeError(
            f"transformers {transformers.__version__}'s common tests are missing: run "
            f".ci/transformers-tests <python> .venv/transformers-tests (make test does)"
        )
    pytest.skip("transformers' common tests not fetched (.ci/transformers-tests)", allow_module_level=True)
sys.path.insert(0, _root)
from transformers_tests.generation.test_utils import GenerationTesterMixin  # noqa: E402
from transformers_tests.test_modeling_common import (  # noqa: E402
    ModelTesterMixin,
    ids_tensor,
    random_attention_mask,
)

BATCH, SEQ, VOCAB, HIDDEN, LAYERS, HEADS, FFN = 13, 7, 99, 32, 2, 4, 37
NUM_LABELS, NUM_CHOICES = 3, 4


class Tester:
    """The sizes of transformers' own BERT tester, for any config factory."""

    def __init__(self, parent, make_config, use_token_type_ids: bool):
        self.parent = parent
        self.make_config = make_config
        self.use_token_type_ids = use_token_type_ids
        self.batch_size, self.seq_length, self.vocab_size = BATCH, SEQ, VOCAB
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = HIDDEN, LAYERS, HEADS
        self.intermediate_size = FFN
        self.num_labels, self.num_choices = NUM_LABELS, NUM_CHOICES
        self.type_sequence_label_size = 2
        self.is_training = True

    def get_config(self):
        return self.make_config()

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        inputs = {"input_ids": input_ids, "attention_mask": random_attention_mask([self.batch_size, self.seq_length])}
        if self.use_token_type_ids:
            inputs["token_type_ids"] = ids_tensor([self.batch_size, self.seq_length], 2)
        return self.get_config(), inputs


def _sora_encoder_config():
    return SoraConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        pad_token_id=0,
    )


def _sora_decoder_config():
    config = _sora_encoder_config()
    config.is_decoder = True
    config.type_vocab_size = 0
    config.num_key_value_heads = 2
    return config


def _bert_config():
    return transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        type_vocab_size=16,
    )


def _llama_config():
    return transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        intermediate_size=FFN,
        pad_token_id=0,
    )


# the label each head trains with, by the head's Auto task (transformers' own `_prepare_for_class` finds the
# stock classes by name in its static tables, which registered models are not in)
_SEQUENCE_LABELS = ("ForSequenceClassification", "ForNextSentencePrediction")
_TOKEN_LABELS = ("ForTokenClassification", "ForCausalLM", "ForMaskedLM", "LMHeadModel")


# A model inside transformers is named in the static tables of `modeling_auto`, which the common tests read by class
# name (a base model has no loss to train, a multiple-choice head gets `(batch, choices, seq)` inputs); a registered
# model is not, so Sora's heads are named there while its tests run. A sentence-embedding head is what
# `AutoModelForTextEncoding` loads, a base model in transformers' own table (BertModel): no loss of its own.
SORA_AUTO_NAMES = {
    "MODEL_MAPPING_NAMES": ("SoraModel", "SoraDecoderModel", "SoraForSentenceEmbedding"),
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "SoraForMaskedLM",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "SoraForPreTraining",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES": "SoraForCausalLM",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "SoraForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "SoraForTokenClassification",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": "SoraForQuestionAnswering",
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES": "SoraForMultipleChoice",
}


class CommonTests(ModelTesterMixin):
    make_config = None
    use_token_type_ids = True
    test_resize_embeddings = True
    has_attentions = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for table, names in SORA_AUTO_NAMES.items():
            getattr(modeling_auto, table)["sora"] = names

    @classmethod
    def tearDownClass(cls):
        for table in SORA_AUTO_NAMES:
            getattr(modeling_auto, table).pop("sora", None)
        super().tearDownClass()

    def setUp(self):
        self.model_tester = Tester(self, type(self).make_config, self.use_token_type_ids)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=False)
        name = model_class.__name__
        if name.endswith("ForMultipleChoice") and inputs_dict["input_ids"].dim() == 2:
            inputs_dict = {
                k: v.unsqueeze(1).expand(-1, NUM_CHOICES, -1).contiguous()
                if isinstance(v, torch.Tensor) and v.ndim > 1
                else v
                for k, v in inputs_dict.items()
            }
        if not return_labels:
            return inputs_dict
        if name.endswith("ForMultipleChoice"):
            inputs_dict["labels"] = torch.ones(BATCH, dtype=torch.long)
        elif name.endswith("ForQuestionAnswering"):
            inputs_dict["start_positions"] = torch.zeros(BATCH, dtype=torch.long)
            inputs_dict["end_positions"] = torch.zeros(BATCH, dtype=torch.long)
        elif name.endswith(_SEQUENCE_LABELS):
            inputs_dict["labels"] = torch.zeros(BATCH, dtype=torch.long)
        elif name.endswith(_TOKEN_LABELS):
            inputs_dict["labels"] = torch.zeros((BATCH, SEQ), dtype=torch.long)
        elif name.endswith("ForPreTraining") and name.startswith("Bert"):
            inputs_dict["labels"] = torch.zeros((BATCH, SEQ), dtype=torch.long)
            inputs_dict["next_sentence_label"] = torch.zeros(BATCH, dtype=torch.long)
        elif name.endswith("ForPreTraining"):
            inputs_dict["labels"] = torch.zeros((BATCH, SEQ), dtype=torch.long)
        return inputs_dict


class SoraEncoderCommonTest(CommonTests, unittest.TestCase):
    make_config = staticmethod(_sora_encoder_config)
    all_model_classes = (
        SoraModel,
        SoraForMaskedLM,
        SoraForPreTraining,
        SoraForSequenceClassification,
        SoraForTokenClassification,
        SoraForQuestionAnswering,
        SoraForMultipleChoice,
        SoraForSentenceEmbedding,
    )


class SoraDecoderCommonTest(CommonTests, GenerationTesterMixin, unittest.TestCase):
    make_config = staticmethod(_sora_decoder_config)
    use_token_type_ids = False
    all_model_classes = (SoraDecoderModel, SoraForCausalLM, SoraForSequenceClassification)


class BertCommonTest(CommonTests, unittest.TestCase):
    make_config = staticmethod(_bert_config)
    all_model_classes = (
        transformers.BertModel,
        transformers.BertForMaskedLM,
        transformers.BertForPreTraining,
        transformers.BertForSequenceClassification,
        transformers.BertForTokenClassification,
        transformers.BertForQuestionAnswering,
        transformers.BertForMultipleChoice,
    )


class LlamaCommonTest(CommonTests, GenerationTesterMixin, unittest.TestCase):
    make_config = staticmethod(_llama_config)
    use_token_type_ids = False
    all_model_classes = (
        transformers.LlamaModel,
        transformers.LlamaForCausalLM,
        transformers.LlamaForSequenceClassification,
    )
