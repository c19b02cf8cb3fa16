"""The leaf every parser of user options imports (recipes, and each training extension's options): the error a
user's mistake raises, the key checker with its suggestions, and values typed as their fields declare. It imports
nothing of sora_hf, so that options can live beside the mechanism they configure without an import cycle."""

from .errors import RecipeError, check_keys
from .values import Kinds, coerce_numbers, typed_mapping, typed_value

__all__ = ["Kinds", "RecipeError", "check_keys", "coerce_numbers", "typed_mapping", "typed_value"]
