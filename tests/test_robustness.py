"""Character-level perturbations for robustness evaluation: seeded, rate-exact on average, homophones that keep
their pinyin, token-classification edits that keep text and tags aligned, and clear errors for bad settings."""

import random

import pytest

from sora_hf.data import NER_LABELS, SEG_LABELS, load_pinyin_table
from sora_hf.data.char_tables import common_characters, homophone_table, load_visual_table
from sora_hf.data.tasks import TaskInfo, validate_tags
from sora_hf.recipes import RecipeError
from sora_hf.training.robustness import (
    CharPerturber,
    check_robustness_task,
    parse_robustness_options,
    perturb_dataset,
    segments_to_tags,
    tags_to_segments,
)

TEXTS = [
    "这个手机质量很好，物流也很快，推荐购买！",
    "屏幕有划痕，客服态度也差，不会再来了。",
    "江泽民在北京会见了来访的外国客人。",
    "价格便宜 quality 不错，值得 buy。",
]
SENTENCE = list("江泽民在北京发表讲话，新华社报道。")
TAGS = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O", "O", "O", "B-ORG", "I-ORG", "I-ORG"]
TAGS += ["O", "O", "O"]


def test_same_seed_same_text_and_rate_zero_is_identity():
    perturber = CharPerturber(0.2)
    first = [perturber.perturb_text(t, random.Random(f"7:{i}")) for i, t in enumerate(TEXTS)]
    again = [perturber.perturb_text(t, random.Random(f"7:{i}")) for i, t in enumerate(TEXTS)]
    other = [perturber.perturb_text(t, random.Random(f"8:{i}")) for i, t in enumerate(TEXTS)]
    assert first == again and first != other
    assert all(edited != text for (edited, _), text in zip(first, TEXTS, strict=True))
    still = CharPerturber(0.0)
    assert [still.perturb_text(t, random.Random(i))[0] for i, t in enumerate(TEXTS)] == TEXTS
    assert still.perturb_tokens(SENTENCE, TAGS, random.Random(0)) == (SENTENCE, TAGS, 0)


def test_edit_count_matches_the_rate_on_average():
    perturber = CharPerturber(0.1)
    rng = random.Random(0)
    edits = sum(perturber.perturb_text(TEXTS[i % 3], rng)[1] for i in range(600))
    chars = sum(len(TEXTS[i % 3]) for i in range(600))
    assert edits / chars == pytest.approx(0.1, abs=0.01)


def test_homophones_keep_the_pinyin():
    readings = load_pinyin_table()
    common = set(common_characters())
    perturber = CharPerturber(0.5, ["homophone"])
    changed = 0
    for seed in range(40):
        text = TEXTS[seed % 3]
        edited, edits = perturber.perturb_text(text, random.Random(seed))
        assert len(edited) == len(text) and edits > 0
        for before, after in zip(text, edited, strict=True):
            if before != after:
                changed += 1
                assert readings[after][0] == readings[before][0], (before, after)
                assert after in common
    assert changed > 100
    assert "再" in homophone_table()["在"] and "在" not in homophone_table()["在"]


@pytest.mark.parametrize("kind", ["delete", "insert", "swap"])
def test_each_kind_does_what_it_says(kind):
    perturber = CharPerturber(0.3, [kind])
    text = TEXTS[0]
    edited, edits = perturber.perturb_text(text, random.Random(1))
    assert edits == pytest.approx(0.3 * len(text), abs=1)
    if kind == "delete":
        assert len(edited) == len(text) - edits
        it = iter(text)
        assert all(ch in it for ch in edited)  # a subsequence of the original
    elif kind == "insert":
        assert len(edited) == len(text) + edits
        it = iter(edited)
        assert all(ch in it for ch in text)
    else:
        assert sorted(edited) == sorted(text) and edited != text


def test_latin_words_and_spaces_survive_swaps():
    perturber = CharPerturber(0.5, ["swap"])
    edited, _ = perturber.perturb_text(TEXTS[3], random.Random(3))
    assert edited.count(" ") == TEXTS[3].count(" ")
    assert [i for i, ch in enumerate(edited) if ch == " "] == [i for i, ch in enumerate(TEXTS[3]) if ch == " "]


def _entities(tokens, tags):
    spans, current = [], None
    for token, tag in zip(tokens, tags, strict=True):
        if tag.startswith("B-"):
            current = [tag[2:], token]
            spans.append(current)
        elif tag.startswith("I-") and current is not None:
            current[1] += token
        else:
            current = None
    return [tuple(span) for span in spans]


def test_token_deletion_takes_the_tag_and_repairs_bio():
    perturber = CharPerturber(0.3, ["delete"])
    for seed in range(30):
        tokens, tags, edits = perturber.perturb_tokens(SENTENCE, TAGS, random.Random(seed))
        assert len(tokens) == len(tags) == len(SENTENCE) - edits
        assert validate_tags(tags, "BIO") is None
        # every kept token keeps its entity type: (token, type) pairs form a subsequence of the original
        pairs = iter(zip(SENTENCE, [t[2:] for t in TAGS], strict=True))
        assert all(pair in pairs for pair in zip(tokens, [t[2:] for t in tags], strict=True))
    # deleting the B- of 北京 leaves 京 as B-LOC
    tokens, tags, _ = CharPerturber(0.34, ["delete"]).perturb_tokens(
        ["在", "北", "京"], ["O", "B-LOC", "I-LOC"], _Fixed(1)
    )
    assert tokens[-1] == "京" and tags[-1] == "B-LOC"


class _Fixed(random.Random):
    """A Random whose choices pick a fixed index (and whose rounding draw is 0), for one hand-checked edit."""

    def __init__(self, index):
        super().__init__(0)
        self.index = index
        self.calls = 0

    def random(self):
        return 0.0

    def choice(self, seq):
        self.calls += 1
        if self.calls > 2:
            raise AssertionError("one edit expected")
        return seq[self.index] if self.calls == 2 else seq[0]


def test_token_insertion_continues_entities_and_is_o_outside():
    perturber = CharPerturber(0.3, ["insert"])
    for seed in range(30):
        tokens, tags, edits = perturber.perturb_tokens(SENTENCE, TAGS, random.Random(seed))
        assert len(tokens) == len(tags) == len(SENTENCE) + edits and validate_tags(tags, "BIO") is None
        entities = _entities(tokens, tags)
        assert [kind for kind, _ in entities] == ["PER", "LOC", "ORG"]
        for (_, grown), (_, original) in zip(entities, _entities(SENTENCE, TAGS), strict=True):
            it = iter(grown)
            assert all(ch in it for ch in original)  # an entity only grows by insertions inside it
        inserted = len(tokens) - len(SENTENCE)
        outside = [t for t in tags if t == "O"]
        assert len(outside) <= TAGS.count("O") + inserted


def test_swaps_stay_inside_one_span():
    perturber = CharPerturber(0.5, ["swap"])
    for seed in range(30):
        tokens, tags, _ = perturber.perturb_tokens(SENTENCE, TAGS, random.Random(seed))
        assert tags == TAGS
        for (kind, text), (kind0, text0) in zip(_entities(tokens, tags), _entities(SENTENCE, TAGS), strict=True):
            assert kind == kind0 and sorted(text) == sorted(text0)


def test_bmes_without_outside_tag_stays_valid():
    words = ["我们", "在", "北京", "学习", "中文"]
    chars = [c for w in words for c in w]
    tags = [t for w in words for t in (["S"] if len(w) == 1 else ["B", *["M"] * (len(w) - 2), "E"])]
    perturber = CharPerturber(0.4, ["delete", "insert", "swap", "homophone"])
    for seed in range(30):
        new_chars, new_tags, _ = perturber.perturb_tokens(chars, tags, random.Random(seed), "BMES", has_outside=False)
        assert len(new_chars) == len(new_tags)
        assert validate_tags(new_tags, "BMES") is None and "O" not in new_tags
        assert set(new_tags) <= set(SEG_LABELS)


def test_tag_round_trip():
    assert segments_to_tags(tags_to_segments(TAGS)) == TAGS
    bmes = ["B-PER", "E-PER", "S-LOC", "O", "B", "M", "E"]
    assert segments_to_tags(tags_to_segments(bmes, "BMES"), "BMES") == bmes


def test_visual_kind_uses_the_users_table(tmp_path):
    table = tmp_path / "look-alike.txt"
    table.write_text("# groups of look-alike characters\n己已巳\n未末\n", encoding="utf-8")
    assert load_visual_table(table)["已"] == ("己", "巳")
    perturber = CharPerturber(1.0, ["visual"], visual_table=table)
    edited, edits = perturber.perturb_text("自己未来", random.Random(0))
    assert edits == 2 and edited[0] == "自" and edited[1] in "已巳" and edited[2] == "末" and edited[3] == "来"
    (tmp_path / "bad.txt").write_text("己\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least two"):
        load_visual_table(tmp_path / "bad.txt")


def test_perturbed_ner_dataset_keeps_tokens_and_tags_aligned():
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=NER_LABELS))})
    ids = [NER_LABELS.index(t) for t in TAGS]
    data = Dataset.from_dict({"tokens": [SENTENCE] * 20, "tags": [ids] * 20}, features=features)
    info = TaskInfo("ner", "token_classification", label_names=NER_LABELS, tag_scheme="BIO")
    perturbed, fraction = perturb_dataset(data, info, CharPerturber(0.2), seed=5)
    again, _ = perturb_dataset(data, info, CharPerturber(0.2), seed=5)
    assert perturbed["tokens"] == again["tokens"] and perturbed["tokens"] != data["tokens"]
    assert fraction == pytest.approx(0.2, abs=0.05)
    for row in perturbed:
        assert len(row["tokens"]) == len(row["tags"])
        assert validate_tags([NER_LABELS[t] for t in row["tags"]], "BIO") is None


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"rate": 0}, "robustness.rate=0 must be a fraction in (0, 1]"),
        ({"rate": 10}, "robustness.rate=10 must be a fraction in (0, 1]"),
        ({"rate": "high"}, "robustness.rate='high'"),
        ({"kinds": ["homophone", "typo"]}, "robustness.kinds has 'typo', which is not one of"),
        ({"kinds": []}, "robustness.kinds=[] must be a non-empty list"),
        ({"kinds": ["visual"]}, "robustness.visual_table is not set: no table of visually similar characters"),
        ({"kinds": ["visual"], "visual_table": "/nonexistent.txt"}, "robustness.visual_table='/nonexistent.txt'"),
        ({"seed": -1}, "robustness.seed=-1 must be a whole number"),
        ({"rat": 0.1}, "did you mean 'rate'"),
    ],
)
def test_bad_settings_are_named(raw, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace("[", r"\[").replace(".", r"\.")):
        parse_robustness_options(raw)


def test_causal_lm_is_refused_before_training():
    with pytest.raises(RecipeError, match="does not apply to causal_lm"):
        check_robustness_task("causal_lm")
    options = parse_robustness_options({"kinds": "swap", "rate": 0.05})
    assert options.kinds == ("swap",) and options.rate == 0.05 and options.per_kind
