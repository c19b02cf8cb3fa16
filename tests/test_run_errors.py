"""A careless user's training runs: each mistake is one line naming the file, key or limit (exit status 2), a full
disk leaves nothing half-written, and what transformers' Trainer would refuse or warn about is refused here too."""

import pytest
import yaml
from test_pretraining import LINES, tiny_recipe

from sora_hf.cli import main as cli_main
from sora_hf.recipes import RecipeError, load_pretrain_recipe, parse_pretrain_recipe, parse_set_options


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"{line}第{i}条。" for i in range(40) for line in LINES) + "\n", encoding="utf-8")
    return path


def _recipe_file(tmp_path, raw, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sora-hf: error: "), err
    return err[0]


# ---- recipes ---------------------------------------------------------------------------------------------------


def test_a_key_given_twice_is_refused_naming_the_key_and_lines(corpus, tmp_path, capsys):
    text = yaml.safe_dump(tiny_recipe(corpus, tmp_path / "run"), allow_unicode=True, sort_keys=False)
    text = text.replace("  learning_rate: 0.003\n", "  learning_rate: 0.003\n  learning_rate: 0.1\n")
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    first = text.splitlines().index("  learning_rate: 0.003") + 1
    assert cli_main(["pretrain", str(path)]) == 2
    line = _error_line(capsys)
    assert str(path) in line and f"the key 'learning_rate' is given twice (first at line {first})" in line
    assert f"line {first + 1}" in line
    assert not (tmp_path / "run").exists()


def test_yaml_no_in_a_string_field_is_the_word_no(corpus, tmp_path):
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run"))
    overrides = parse_set_options(["training.eval_strategy=no", "training.save_strategy=no"])
    recipe = load_pretrain_recipe(path, overrides)
    assert recipe.training["eval_strategy"] == "no" and recipe.training["save_strategy"] == "no"
    assert recipe.effective["training"]["eval_strategy"] == "no"  # what recipe.yaml of the run records
    with pytest.raises(RecipeError, match=r"training.eval_strategy: YAML reads yes/on/true as true.*quote it"):
        load_pretrain_recipe(path, parse_set_options(["training.eval_strategy=yes"]))


def test_learning_rate_zero_is_refused(corpus, tmp_path, capsys):
    path = _recipe_file(tmp_path, tiny_recipe(corpus, tmp_path / "run"))
    assert cli_main(["pretrain", str(path), "--set", "training.learning_rate=0"]) == 2
    assert "training.learning_rate=0 trains nothing" in _error_line(capsys)
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="learning_rate=0"):
        parse_pretrain_recipe(tiny_recipe(corpus, tmp_path / "run", learning_rate=0.0))
