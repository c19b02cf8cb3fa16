"""Robustness of a fine-tuned model to character-level noise that matters for Chinese text.

Switched on by a recipe section; after the clean test split is scored, the same test split is perturbed (seeded)
and scored again with the task's own metric::

    robustness:
      rate: 0.1                                      # fraction of characters (tokens) edited per text
      kinds: [homophone, delete, insert, swap]       # the default; `visual` needs `visual_table:`
      seed: 0
      per_kind: true                                 # also score each kind alone at the same rate

Kinds of edit (each edited character is edited once; the number of edits per text is `rate * length`, rounded
up or down at random so that its mean is exact):

* ``homophone``: a character becomes a common character with the same toneless pinyin (snownlp's table): 在->再.
* ``visual``: a character becomes a look-alike from the user's table (no such table ships offline).
* ``delete``: a character is dropped.
* ``insert``: a common character is inserted.
* ``swap``: two neighbouring characters trade places.

What is perturbed per task: the text (and its pair) for classification and similarity, the question for extractive
QA (the context and its answer spans stay exact), the source for seq2seq, and the tokens of token classification
with their tags kept aligned: a deleted token takes its tag with it (and the entity's next token becomes its `B-`),
an inserted token inside an entity continues it (`I-`), one outside is `O` (or joins the preceding span for tag
sets without `O`, such as BMES segmentation), and only neighbours inside the same span (or both outside) swap.

Layout: `config.py` (options), `perturb.py` (mechanism), `evaluate.py` (scores on the perturbed test split).
"""

from ..._lazy import lazy_exports

# the public names of each module, imported on first use (so that `config` loads without torch)
__getattr__, __all__ = lazy_exports(
    __name__,
    perturb=("CharPerturber", "segments_to_tags", "tags_to_segments"),
    config=("DEFAULT_KINDS", "KINDS", "ROBUSTNESS_KEYS", "RobustnessOptions", "parse_robustness_options"),
    evaluate=("check_robustness_task", "evaluate_robustness", "perturb_dataset"),
)
