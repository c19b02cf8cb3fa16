"""SoraConfig: one config for the three shapes, and a ValueError naming the field for every inconsistent value."""

import pytest
from helpers import tiny_config_kwargs

from sora_hf import SoraConfig


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(num_attention_heads=4, num_key_value_heads=3), "num_key_value_heads"),
        (dict(hidden_act="swishy"), "hidden_act"),
        (dict(classifier_pooling="max"), "classifier_pooling"),
        (dict(hidden_dropout=1.5), "hidden_dropout"),
        (dict(attention_dropout=-0.1), "attention_dropout"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(vocab_size=100, mask_token_id=150), "mask_token_id"),
        (dict(generator_hidden_size=30, generator_num_attention_heads=4), "generator_hidden_size"),
        (dict(id2label={0: "neg", 1: "pos"}, num_labels=3), "num_labels"),
        (dict(id2label={0: "neg", 1: "pos"}, label2id={"neg": 1, "pos": 0}), "label2id"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        SoraConfig(**tiny_config_kwargs(**overrides))


def test_derived_defaults_and_round_trip(tmp_path):
    config = SoraConfig(**tiny_config_kwargs(num_key_value_heads=None, head_dim=None))
    assert config.head_dim == 8 and config.num_key_value_heads == 4 and config.model_type == "sora"
    assert config.rope_parameters["rope_type"] == "default" and config.rope_parameters["rope_theta"] == 10000.0
    config.save_pretrained(tmp_path)
    loaded = SoraConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


def test_named_labels_survive_and_placeholder_labels_resize(tmp_path):
    SoraConfig(**tiny_config_kwargs(id2label={0: "neg", 1: "pos", 2: "neu"})).save_pretrained(tmp_path / "named")
    assert SoraConfig.from_pretrained(tmp_path / "named", num_labels=3).id2label == {0: "neg", 1: "pos", 2: "neu"}
    # a new label count replaces them, as BERT does (fine-tuning a fine-tuned model on other labels)
    assert SoraConfig.from_pretrained(tmp_path / "named", num_labels=2).id2label == {0: "LABEL_0", 1: "LABEL_1"}
    SoraConfig(**tiny_config_kwargs(num_labels=3)).save_pretrained(tmp_path / "placeholder")
    assert SoraConfig.from_pretrained(tmp_path / "placeholder", num_labels=5).num_labels == 5


def test_generator_config_is_narrower_with_the_same_vocabulary():
    config = SoraConfig(**tiny_config_kwargs())
    generator = config.generator_config()
    assert generator.hidden_size == 16 and generator.num_attention_heads == 2 and generator.num_hidden_layers == 1
    assert generator.vocab_size == config.vocab_size and not generator.multi_level_attention


def test_enumerated_fields_are_literals_checked_by_strict():
    """`classifier_pooling` and `task_loss_weighting` are `Literal`s that huggingface_hub's @strict validates, on
    construction (a ValueError naming field, value and choices) and on assignment (strict's own error); the
    constants other code reads hold the same values."""
    from dataclasses import fields
    from typing import get_args

    from huggingface_hub.errors import StrictDataclassFieldValidationError

    from sora_hf.configuration_sora import CHOICE_FIELDS, POOLING_MODES, TASK_LOSS_WEIGHTINGS

    hints = {f.name: f.type for f in fields(SoraConfig)}
    assert get_args(hints["classifier_pooling"]) == POOLING_MODES == ("cls", "mean", "last")
    assert get_args(hints["task_loss_weighting"]) == TASK_LOSS_WEIGHTINGS == ("fixed", "uncertainty")
    assert {"classifier_pooling", "task_loss_weighting", "norm_type", "mlp_type"} <= set(CHOICE_FIELDS)
    for name, choices in CHOICE_FIELDS.items():  # every enumerated field is a Literal of exactly these values
        assert get_args(hints[name]) == choices, name
        with pytest.raises(ValueError, match=f"{name}='nope' must be one of"):
            SoraConfig(**tiny_config_kwargs(**{name: "nope"}))
    with pytest.raises(ValueError, match=r"classifier_pooling='max' must be one of \('cls', 'mean', 'last'\)"):
        SoraConfig(**tiny_config_kwargs(classifier_pooling="max"))
    config = SoraConfig(**tiny_config_kwargs(classifier_pooling="mean"))
    with pytest.raises(StrictDataclassFieldValidationError, match="classifier_pooling"):
        config.classifier_pooling = "max"
    with pytest.raises(ValueError, match="hidden_size"):  # other refusals still reach the field checks
        SoraConfig(**tiny_config_kwargs(hidden_size=30, num_attention_heads=4, classifier_pooling="last"))
