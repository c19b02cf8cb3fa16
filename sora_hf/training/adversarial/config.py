"""The recipe's `adversarial:` section, parsed once into `AdversarialOptions` (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ...validation import RecipeError, check_keys

AdversarialMethod = Literal["fgm", "pgd", "freelb"]
METHODS: tuple[AdversarialMethod, ...] = get_args(AdversarialMethod)
ADVERSARIAL_KEYS = {"method", "epsilon", "alpha", "steps", "init_magnitude"}
_TINY = 1e-12
# Per example, over all its tokens. The tiny encoder's token embeddings have norm ~0.6 and the attack puts about half
# of its budget on one token, so 0.1 raises a trained sentiment model's loss from 0.47 to 0.69 and 0.5 to 1.39
# (fine-tuning with 0.5 stopped learning); scale it with your model's embedding norms.
DEFAULT_EPSILON = 0.1


@dataclass(frozen=True)
class AdversarialOptions:
    """A parsed `adversarial:` recipe section (see the module docstring for what each method does)."""

    method: AdversarialMethod
    epsilon: float
    alpha: float
    steps: int
    init_magnitude: float


def parse_adversarial_options(raw: dict[str, Any]) -> AdversarialOptions:
    """Validate an `adversarial:` section; raises RecipeError naming the key, its value and what is allowed."""
    check_keys("adversarial", raw, ADVERSARIAL_KEYS)
    method = raw.get("method")
    if method not in METHODS:
        raise RecipeError(f"adversarial.method={method!r} must be one of {', '.join(METHODS)}")
    epsilon = _number(raw, "epsilon", DEFAULT_EPSILON)
    if epsilon < 0:
        raise RecipeError(f"adversarial.epsilon={epsilon} must be >= 0 (the L2 radius of one example's perturbation)")
    if method == "fgm":
        for key in ("alpha", "steps", "init_magnitude"):
            if key in raw:
                raise RecipeError(
                    f"adversarial.{key} does not apply to fgm (one step of size epsilon); use pgd or freelb"
                )
        return AdversarialOptions("fgm", epsilon, alpha=epsilon, steps=1, init_magnitude=0.0)
    steps = raw.get("steps", 3)
    if isinstance(steps, bool) or not isinstance(steps, int | float) or steps != int(steps) or not 1 <= steps <= 20:
        raise RecipeError(f"adversarial.steps={steps!r} must be a whole number of ascent steps from 1 to 20")
    steps = int(steps)
    alpha = _number(raw, "alpha", epsilon / steps if method == "freelb" else 1.5 * epsilon / steps)
    if alpha <= 0:
        raise RecipeError(f"adversarial.alpha={alpha} must be > 0 (the size of one ascent step)")
    if method == "pgd" and "init_magnitude" in raw:
        raise RecipeError("adversarial.init_magnitude applies to freelb only (pgd starts from the clean gradient)")
    init = _number(raw, "init_magnitude", min(alpha, epsilon)) if method == "freelb" else 0.0
    if not 0 <= init <= epsilon:
        raise RecipeError(
            f"adversarial.init_magnitude={init} must be in [0, epsilon={epsilon}] (the norm of FreeLB's random start)"
        )
    return AdversarialOptions(method, epsilon, alpha, steps, init)


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise RecipeError(f"adversarial.{key}={value!r} must be a number")
    return float(value)
