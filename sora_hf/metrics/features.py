"""What the metric modules share: the input types they accept, how their `MetricInfo` is attached, and helpers.

Each module script imports this file as `sora_hf.metrics.features` (an installed library to evaluate's loader), so
the copy evaluate makes in its modules cache still finds it.
"""

from __future__ import annotations

import datasets
import evaluate

STRING = datasets.Value("string")
INT = datasets.Value("int64")


def pairs(predictions, references=None) -> datasets.Features:
    """One prediction and its reference per example; the reference has the prediction's type unless given."""
    return datasets.Features(
        {"predictions": predictions, "references": predictions if references is None else references}
    )


# The first option whose types fit the first example is used: int labels, 0/1 rows (multi-label), string labels.
LABELS = [pairs(INT), pairs(datasets.Sequence(INT)), pairs(STRING)]
# One reference string per prediction, or a list of references per prediction.
TEXTS = [pairs(STRING), pairs(STRING, datasets.Sequence(STRING))]

SKLEARN_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


def with_info(description: str, citation: str, inputs_description: str, features, **urls):
    """Class decorator: the metric's docstring and its `_info()` (a fresh `MetricInfo` per call, as evaluate fills
    it in); `urls` are MetricInfo's `codebase_urls` / `reference_urls`."""

    def attach(cls: type[evaluate.Metric]) -> type[evaluate.Metric]:
        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description=description,
                citation=citation,
                inputs_description=inputs_description,
                features=features,
                **urls,
            )

        cls._info = _info
        return evaluate.utils.file_utils.add_start_docstrings(description, inputs_description)(cls)

    return attach


def reference_streams(references) -> list[list[str]]:
    """Per-prediction references (a str or a list of str each) -> sacrebleu's reference streams, one per reference."""
    references = [[reference] if isinstance(reference, str) else list(reference) for reference in references]
    num_references = len(references[0]) if references else 1
    if any(len(refs) != num_references for refs in references):
        raise ValueError("every prediction needs the same number of references")
    return [[refs[i] for refs in references] for i in range(num_references)]
