"""The classical references Sora is measured against, on the embedded splits, chosen on validation data only.

    pip install -e ".[benchmarks]"        # python-crfsuite, for the character CRF
    python benchmarks/references.py --out benchmarks/results/references.json

- sentiment: character 1-3-gram TF-IDF + logistic regression (scikit-learn); C from {0.3, 1, 3, 10}.
- ner, pos, seg: a linear-chain CRF over characters (python-crfsuite, L-BFGS) with the usual window features (the
  character, its neighbours at -2..+2, the bigrams around it, its kind: CJK / Latin / digit / punctuation); the
  L2 weight c2 from {0.01, 0.1, 1} (`--c2`). POS has ~90 labels, and L-BFGS over them takes hours on a CPU: its
  CRF is trained with the averaged perceptron instead (`--tasks pos --algorithm ap --max-iterations 20`, 20 epochs,
  one Viterbi pass per sentence per epoch; nothing to choose).

Every choice is made on a seeded 10% validation split of the training rows (as `sora-hf finetune` carves it); the
chosen setting is retrained on those same training rows and the test split is scored once, with the same metrics
Sora's runs report (accuracy; seqeval entity F1, BMES for segmentation).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import unicodedata
from pathlib import Path

from sora_hf.data.tasks import carve_validation, load_embedded_task
from sora_hf.metrics import load_metric


def _split(task: str, seed: int):
    dataset, info = load_embedded_task(task, seed=seed)
    return carve_validation(dataset, info.task_type, 0.1, seed), info


def sentiment(seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    dataset, _ = _split("sentiment", seed)
    train, validation, test = dataset["train"], dataset["validation"], dataset["test"]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train["text"])
    scores = {}
    for c in (0.3, 1.0, 3.0, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, train["label"])
        scores[c] = float(model.score(vectorizer.transform(validation["text"]), validation["label"]))
    best = max(scores, key=scores.get)
    started = time.perf_counter()
    model = LogisticRegression(C=best, max_iter=2000).fit(x_train, train["label"])
    seconds = time.perf_counter() - started
    return {
        "reference": "char 1-3-gram TF-IDF + logistic regression",
        "validation_accuracy": scores,
        "chosen": {"C": best},
        "test_accuracy": float(model.score(vectorizer.transform(test["text"]), test["label"])),
        "train_seconds": round(seconds, 1),
    }


def _kind(char: str) -> str:
    if "\u3400" <= char <= "\u9fff":
        return "cjk"
    category = unicodedata.category(char)
    return {"L": "latin", "N": "digit", "P": "punct"}.get(category[0], "other")


def char_features(chars: list[str]) -> list[list[str]]:
    padded = ["<s2>", "<s1>", *chars, "</s1>", "</s2>"]
    features = []
    for i in range(2, len(padded) - 2):
        c = padded[i]
        features.append(
            [
                "bias",
                f"c0={c}",
                f"k0={_kind(c) if len(c) == 1 else c}",
                *(f"c{d}={padded[i + d]}" for d in (-2, -1, 1, 2)),
                f"b-1={padded[i - 1]}{c}",
                f"b+1={c}{padded[i + 1]}",
                f"t={padded[i - 1]}{c}{padded[i + 1]}",
            ]
        )
    return features


def _crf_predict(model_path: Path, rows) -> list[list[str]]:
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    tagger.open(str(model_path))
    return [tagger.tag(char_features(list(tokens))) for tokens in rows["tokens"]]


def tagging(
    task: str, seed: int, work: Path, max_iterations: int, c2_values: tuple[float, ...], algorithm: str = "lbfgs"
) -> dict:
    import pycrfsuite

    dataset, info = _split(task, seed)
    names = info.label_names
    scheme = {"scheme": "BMES"} if info.tag_scheme == "BMES" else {}
    seqeval = load_metric("seqeval")

    def tags(rows):
        return [[names[t] for t in row] for row in rows["tags"]]

    def train(c2: float | None) -> tuple[Path, float]:
        trainer = pycrfsuite.Trainer(algorithm=algorithm, verbose=False)
        for tokens, gold in zip(dataset["train"]["tokens"], tags(dataset["train"]), strict=True):
            trainer.append(char_features(list(tokens)), gold)
        regularised = {} if c2 is None else {"c1": 0.0, "c2": c2}
        trainer.set_params({**regularised, "max_iterations": max_iterations})
        path = work / f"{task}-{algorithm}-c2-{c2}.crfsuite"
        started = time.perf_counter()
        trainer.train(str(path))
        return path, time.perf_counter() - started

    def f1(path: Path, split: str) -> dict:
        return seqeval.compute(
            predictions=_crf_predict(path, dataset[split]), references=tags(dataset[split]), **scheme
        )

    scores, paths, seconds = {}, {}, {}
    for c2 in c2_values if algorithm == "lbfgs" else (None,):
        paths[c2], seconds[c2] = train(c2)
        scores[c2] = float(f1(paths[c2], "validation")["overall_f1"])
    best = max(scores, key=scores.get)
    result = f1(paths[best], "test")
    return {
        "reference": "character CRF (python-crfsuite, window features)",
        "algorithm": algorithm,
        "validation_overall_f1": {str(c2): score for c2, score in scores.items()},
        "chosen": {"c2": best},
        "max_iterations": max_iterations,
        "labels": len(names),
        "test_overall_f1": float(result["overall_f1"]),
        "test_overall_accuracy": float(result["overall_accuracy"]),
        "train_seconds": round(seconds[best], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "ner", "pos", "seg"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-iterations", type=int, default=100)
    parser.add_argument("--c2", nargs="+", type=float, default=[0.01, 0.1, 1.0], help="CRF L2 weights to try")
    parser.add_argument(
        "--algorithm", choices=["lbfgs", "ap"], default="lbfgs", help="CRF training (ap: averaged perceptron)"
    )
    parser.add_argument("--work", default="runs/references")
    parser.add_argument("--out", default="benchmarks/results/references.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    report["seed"] = args.seed
    for task in args.tasks:
        report[task] = (
            sentiment(args.seed)
            if task == "sentiment"
            else tagging(task, args.seed, work, args.max_iterations, tuple(args.c2), args.algorithm)
        )
        print(task, json.dumps(report[task]), flush=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
