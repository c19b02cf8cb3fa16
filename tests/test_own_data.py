"""Bringing one's own data as a new user would: the templates start where the quickstart leaves its encoder with the
best settings known, malformed rows can be skipped and counted, label names come from the recipe, every evaluation
shows the task's metrics, and loading an encoder under a new head says so in one line."""

import inspect
import logging
from pathlib import Path

import pytest
import yaml

from sora_hf.data.tasks import load_task_files
from sora_hf.recipes import RecipeError, find_recipe, parse_finetune_recipe

TEMPLATES = ("my-classification", "my-token-classification", "my-question-answering", "my-similarity")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _conll(sentences: list[list[tuple[str, str]]]) -> str:
    return "\n\n".join("\n".join(f"{token} {tag}" for token, tag in sentence) for sentence in sentences) + "\n"


PER = [("张", "B-PER"), ("三", "I-PER"), ("来", "O"), ("了", "O")]
LOC = [("去", "O"), ("北", "B-LOC"), ("京", "I-LOC")]


# ---- templates ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_encoder_templates_start_from_the_quickstart_encoder_with_full_fine_tuning(name):
    from sora_hf.runs.quickstart import run_quickstart

    quickstart_encoder = Path(inspect.signature(run_quickstart).parameters["output_dir"].default) / "pretrain"
    path = find_recipe(name, "finetune")
    recipe = parse_finetune_recipe(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    assert Path(recipe.checkpoint) == quickstart_encoder
    assert recipe.method == "full"  # README's results table: full beat LoRA on every task
    if name == "my-token-classification":
        assert recipe.model.get("use_crf") is True


# ---- malformed rows -----------------------------------------------------------------------------------------------


def test_a_malformed_csv_row_stops_the_load_by_default_and_says_how_to_skip_it(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n好评,pos\n差评,neg\n东西不错, 就是贵,pos\n很好,pos\n")
    with pytest.raises(ValueError, match=r"row 3 \(line 4\): 3 fields but the header has 2.*on_malformed: skip"):
        load_task_files("classification", train, train)


def test_malformed_rows_are_skipped_and_counted_with_their_lines(tmp_path, caplog):
    rows = ["text,label", "好评,pos", "差评,neg", "东西不错, 就是贵,pos", ",neg", "很好,pos", "太差,neg"]
    train = _write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="sora_hf.data.tasks"):
        dataset, info = load_task_files("classification", train, train, on_malformed="skip")
    assert dataset["train"]["text"] == ["好评", "差评", "很好", "太差"]
    warning = next(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert "skipped 2 malformed" in warning and "row 3 (line 4)" in warning and "row 4 (line 5)" in warning
    assert "2 malformed skipped" in info.description


def test_malformed_sentences_are_skipped_whole_and_counted(tmp_path, caplog):
    tagless = [("李", "B-PER"), ("四", "")]  # a line with a token and no tag
    broken = [("在", "O"), ("上", "I-LOC"), ("海", "I-LOC")]  # I- after O: invalid BIO
    train = _write(tmp_path / "train.conll", _conll([PER, tagless, LOC, broken, PER]))
    with pytest.raises(ValueError, match=r"line 7: only one field '四'.*on_malformed: skip"):
        load_task_files("token_classification", train, train)
    with caplog.at_level(logging.WARNING, logger="sora_hf.data.tasks"):
        dataset, _ = load_task_files("token_classification", train, train, on_malformed="skip")
    assert [len(tokens) for tokens in dataset["train"]["tokens"]] == [4, 3, 4]
    warning = next(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert "skipped 2 malformed" in warning and "sentence 2 (lines 6-7)" in warning and "line 14" in warning


def test_the_hint_blames_the_sentence_not_the_scheme_when_the_scheme_is_right(tmp_path):
    broken = [("在", "O"), ("上", "I-LOC"), ("海", "I-LOC")]
    train = _write(tmp_path / "train.conll", _conll([PER, LOC, PER, broken]))
    with pytest.raises(ValueError) as error:
        load_task_files("token_classification", train, train)
    message = str(error.value)
    assert "the other 3 of 4 sentences are valid BIO, so the scheme is right" in message
    assert "set data.tag_scheme" not in message and "on_malformed: skip" in message


def test_a_whitespace_token_is_named_as_such(tmp_path):
    train = _write(tmp_path / "train.conll", "张 B-PER\n三 I-PER\n\u3000 O\n来 O\n")
    with pytest.raises(ValueError, match=r"line 3: the token is a whitespace character \(U\+3000 IDEOGRAPHIC SPACE\)"):
        load_task_files("token_classification", train, train)


def test_on_malformed_is_a_checked_recipe_choice(tmp_path):
    raw = {"name": "x", "checkpoint": "c", "output_dir": str(tmp_path / "o")}
    data = {"task_type": "classification", "train_file": "t.csv"}
    assert parse_finetune_recipe({**raw, "data": {**data, "on_malformed": "skip"}}).data.on_malformed == "skip"
    with pytest.raises(RecipeError, match="data.on_malformed='ignore' must be 'error' or 'skip'"):
        parse_finetune_recipe({**raw, "data": {**data, "on_malformed": "ignore"}})


# ---- label names --------------------------------------------------------------------------------------------------


def test_recipe_labels_name_integer_labels_and_fix_their_order(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n好评,1\n差评,0\n很好,1\n")
    dataset, info = load_task_files("classification", train, train, labels=["negative", "positive"])
    assert info.label_names == ["negative", "positive"]
    assert dataset["train"]["label"] == [1, 0, 1]
    named = _write(tmp_path / "named.csv", "text,label\n好评,pos\n差评,neg\n一般,neutral\n")
    dataset, info = load_task_files("classification", named, named, labels=["pos", "neutral", "neg"])
    assert info.label_names == ["pos", "neutral", "neg"] and dataset["train"]["label"] == [0, 2, 1]


def test_recipe_labels_refuse_a_label_they_do_not_list(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n好评,pos\n差评,neg\n还行,postive\n")
    with pytest.raises(ValueError, match=r"row 3 \(line 4\): label 'postive' is not one of data.labels \(neg, pos\)"):
        load_task_files("classification", train, train, labels=["neg", "pos"])
    counted = _write(tmp_path / "counted.csv", "text,label\n好评,1\n差评,2\n")
    with pytest.raises(ValueError, match=r"label '2' is not one of data.labels \(neg, pos\) or a position 0-1 in it"):
        load_task_files("classification", counted, counted, labels=["neg", "pos"])


def test_recipe_labels_fix_the_tag_set_of_token_classification(tmp_path):
    train = _write(tmp_path / "train.conll", _conll([PER, LOC]))
    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    dataset, info = load_task_files("token_classification", train, train, labels=tags)
    assert info.label_names == tags  # B-ORG/I-ORG kept although the file has none
    with pytest.raises(ValueError, match=r"sentence 1 \(line 1\): tag 'B-PER' at token 1 is not one of data.labels"):
        load_task_files("token_classification", train, train, labels=["O", "B-LOC", "I-LOC"])


def test_recipe_labels_are_checked_in_the_recipe(tmp_path):
    raw = {"name": "x", "checkpoint": "c", "output_dir": str(tmp_path / "o")}
    data = {"task_type": "classification", "train_file": "t.csv"}
    recipe = parse_finetune_recipe({**raw, "data": {**data, "labels": ["neg", "pos"]}})
    assert recipe.data.labels == ["neg", "pos"] and recipe.effective["data"]["labels"] == ["neg", "pos"]
    with pytest.raises(RecipeError, match="data.labels lists 'pos' more than once"):
        parse_finetune_recipe({**raw, "data": {**data, "labels": ["pos", "neg", "pos"]}})
    with pytest.raises(RecipeError, match="a regression target has none"):
        parse_finetune_recipe({**raw, "data": {**data, "regression": True, "labels": ["a"]}})
    with pytest.raises(RecipeError, match="the embedded task 'sentiment' has its own"):
        parse_finetune_recipe({**raw, "data": {"embedded": "sentiment", "labels": ["a", "b"]}})


# ---- the task's metrics at every evaluation -----------------------------------------------------------------------


class _Evaluations:
    """The logs of every evaluation the Trainer runs during training."""

    def __init__(self):
        from transformers import TrainerCallback

        self.logs: list[dict] = []
        outer = self

        class Callback(TrainerCallback):
            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                outer.logs.append(dict(metrics or {}))

        self.callback = Callback()


def _own_data_run(checkpoint, out, data, **extra):
    raw = {
        "name": "own",
        "checkpoint": str(checkpoint),
        "output_dir": str(out),
        "method": "full",
        "max_length": 32,
        "doc_stride": 8,
        "data": data,
        "training": {
            "num_train_epochs": 2,
            "per_device_train_batch_size": 8,
            "save_strategy": "no",
            "logging_steps": 1,
            "disable_tqdm": True,
        },
        **extra,
    }
    return parse_finetune_recipe(raw)


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("classification", "eval_accuracy"),
        ("token_classification", "eval_overall_f1"),
        ("similarity", "eval_spearman"),
    ],
)
def test_every_evaluation_reports_the_task_s_metrics(encoder_checkpoint, tmp_path, task, metric):
    from sora_hf.runs import run_finetuning

    if task == "classification":
        lines = ["text,label"] + [
            f"{t}{i},{label}" for i in range(12) for t, label in (("很好", "pos"), ("太差", "neg"))
        ]
        train, extra = _write(tmp_path / "train.csv", "\n".join(lines) + "\n"), {}
    elif task == "token_classification":
        train = _write(tmp_path / "train.conll", _conll([PER, LOC] * 12))
        extra = {"model": {"use_crf": True}}
    else:
        lines = ["text,text_pair,label"] + [f"天气很好{i},天气不错{i},{0.1 * (i % 9)}" for i in range(24)]
        train, extra = _write(tmp_path / "pairs.csv", "\n".join(lines) + "\n"), {}
    data = {"task_type": task, "train_file": str(train), "validation_split": 0.25}
    evaluations = _Evaluations()
    metrics = run_finetuning(
        _own_data_run(encoder_checkpoint, tmp_path / "out", data, **extra), callbacks=[evaluations.callback]
    )
    during = [logs for logs in evaluations.logs if "eval_loss" in logs]
    assert len(during) >= 2 and all(metric in logs for logs in during), evaluations.logs
    # the last evaluation scores the model kept as the end-of-run validation score does
    assert during[-1][metric] == pytest.approx(metrics[metric.replace("eval_", "validation_")], abs=1e-6)


def test_evaluations_batched_by_length_are_scored_in_the_splits_order(encoder_checkpoint, tmp_path):
    """`train_sampling_strategy: group_by_length` also groups transformers' evaluation batches by length; the task's
    metrics read the split's labels in order, so every evaluation must keep that order (texts of many lengths, the
    labels alternating, so that a reordering shows)."""
    from sora_hf.runs import run_finetuning

    lines = ["text,label"] + [
        f"{word * (1 + i % 7)},{label}" for i in range(24) for word, label in (("好", "pos"), ("差", "neg"))
    ]
    train = _write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    data = {"task_type": "classification", "train_file": str(train), "validation_split": 0.25}
    recipe = _own_data_run(encoder_checkpoint, tmp_path / "out", data)
    recipe.training.update(train_sampling_strategy="group_by_length", num_train_epochs=8, learning_rate=2e-3)
    evaluations = _Evaluations()
    metrics = run_finetuning(recipe, callbacks=[evaluations.callback])
    during = [logs for logs in evaluations.logs if "eval_loss" in logs]
    assert metrics["validation_accuracy"] > 0.8  # learnt, so that a wrong order would score lower
    assert during[-1]["eval_accuracy"] == pytest.approx(metrics["validation_accuracy"], abs=1e-6)


# ---- the load report ----------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def load_reports():
    """What transformers' modeling_utils logger hands its handlers (its load report is a warning there)."""
    handler = _Records()
    source = logging.getLogger("transformers.modeling_utils")
    source.addHandler(handler)
    yield handler.messages
    source.removeHandler(handler)


def _tagging_recipe(checkpoint, tmp_path):
    train = _write(tmp_path / "train.conll", _conll([PER, LOC] * 4))
    data = {"task_type": "token_classification", "train_file": str(train)}
    return _own_data_run(checkpoint, tmp_path / "out", data, model={"use_crf": True})


def test_a_new_head_on_a_pre_trained_encoder_is_one_info_line_not_the_load_table(
    encoder_checkpoint, tmp_path, load_reports, caplog
):
    from sora_hf.runs.finetune_steps import load_model, load_task
    from sora_hf.tokenizer import load_tokenizer

    recipe = _tagging_recipe(encoder_checkpoint, tmp_path)
    _, info = load_task(recipe)
    with caplog.at_level(logging.INFO, logger="sora_hf.runs.finetune_steps"):
        model = load_model(recipe, info, load_tokenizer(str(encoder_checkpoint)))
    assert model.crf is not None
    assert not [m for m in load_reports if "LOAD REPORT" in m]
    lines = [r.getMessage() for r in caplog.records if r.name == "sora_hf.runs.finetune_steps"]
    assert any(
        "new head classifier.*, crf.* initialised (expected when fine-tuning a pre-trained encoder)" in line
        and "head.*" in line
        for line in lines
    ), lines


def test_the_load_table_still_shows_what_the_encoder_lacks(encoder_checkpoint, tmp_path, load_reports):
    import shutil

    from safetensors.torch import load_file, save_file

    from sora_hf.runs.finetune_steps import load_model, load_task
    from sora_hf.tokenizer import load_tokenizer

    folder = tmp_path / "encoder"
    shutil.copytree(encoder_checkpoint, folder)
    weights = load_file(folder / "model.safetensors")
    dropped = next(key for key in weights if key.startswith("model.layers.1."))
    save_file({k: v for k, v in weights.items() if k != dropped}, folder / "model.safetensors", {"format": "pt"})
    recipe = _tagging_recipe(folder, tmp_path)
    _, info = load_task(recipe)
    with pytest.raises(RecipeError, match="has no weights for 1 body parameters"):
        load_model(recipe, info, load_tokenizer(str(folder)))
    assert [m for m in load_reports if "LOAD REPORT" in m and "MISSING" in m]
