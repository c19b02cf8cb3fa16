"""Adversarial training on the embedding output: FGM, PGD and FreeLB as a `Trainer` extension.

Switched on by a recipe section::

    adversarial:
      method: pgd        # fgm | pgd | freelb
      epsilon: 0.1       # radius of the perturbation ball, L2 over one example's (tokens x hidden) embeddings
      alpha: 0.05        # pgd / freelb: size of each ascent step
      steps: 3           # pgd / freelb: number of ascent steps K

Why the embedding *output* and not the embedding weight: the implementation common in Chinese competitions adds
`epsilon * grad / |grad|` to `word_embeddings.weight`. Under LoRA that weight is frozen and has no gradient, so the
attack silently does nothing. Here a forward hook on `model.get_input_embeddings()` adds a perturbation `delta` to
what the embedding returns; `delta` gets its gradient from the loss whether or not the embedding trains, so the
same code serves full fine-tuning and LoRA, and every head that takes `input_ids` (classification, token
classification, QA, similarity pairs, multiple choice, seq2seq encoders).

`delta` is normalised and projected per example (L2 over the sequence x hidden, padding masked out), as in FreeLB
(Zhu et al., 2020), so the attack on one example does not depend on the rest of its batch: gradient accumulation
over half batches gives the gradient of the whole batch.

Gradients each method leaves for the optimizer step (all losses scaled for gradient accumulation as `Trainer`
scales them, and backpropagated with `accelerator.backward`, so mixed precision and DDP keep working):

* FGM (Miyato et al., 2017): grad L(x) + grad L(x + delta), delta = epsilon * g / |g|, g = dL/d(embeddings).
* PGD (Madry et al., 2018): grad L(x) + grad L(x + delta_K), where delta_t = proj_epsilon(delta_{t-1} + alpha *
  g_{t-1} / |g_{t-1}|); the K-1 intermediate gradients are taken with respect to delta only.
* FreeLB: (1/K) * sum_t grad L(x + delta_{t-1}), delta_0 random in the ball, delta_t = proj_epsilon(delta_{t-1} +
  alpha * g / |g|); every ascent step's parameter gradient is kept ("free" large-batch training).

The loss `training_step` returns (and Trainer logs as `loss`) is the clean loss for FGM and PGD and the mean
perturbed loss for FreeLB; the mean loss under attack is logged beside it as `adversarial_loss`.

Layout: `config.py` (options), `perturbation.py` (mechanism), `trainer.py` (the Trainer).
"""

from ..._lazy import lazy_exports

# the public names of each module, imported on first use (so that `config` loads without torch)
__getattr__, __all__ = lazy_exports(
    __name__,
    config=("ADVERSARIAL_KEYS", "AdversarialOptions", "DEFAULT_EPSILON", "METHODS", "parse_adversarial_options"),
    trainer=("AdversarialTrainer",),
    perturbation=("EmbeddingPerturbation", "normalise", "project", "random_start"),
)
