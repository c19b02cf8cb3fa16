"""Recipes are data: a YAML file names the data, the tokenizer, the model size, the objective and the Trainer
arguments of a run. This module reads them strictly — a misspelt or unknown key, or a value outside a key's
choices, stops the run with a one-line message that names the key and suggests the nearest valid one, before any
data is loaded or any step is trained.

It imports neither torch nor transformers, so that `sora-hf` refuses a bad recipe at once: the keys and choices
that `TrainingArguments` and `SoraConfig` accept are read from their source files (with `ast`), and transformers
is imported only when those files cannot be read.
"""

from ..validation.errors import *  # noqa: F403
from ..validation.errors import _suggest  # noqa: F401  (tests and callers that suggest names)
from ..validation.values import *  # noqa: F403
from ..validation.values import _kinds_of_hint  # noqa: F401
from .choices import *  # noqa: F403
from .defaults import *  # noqa: F403
from .io import *  # noqa: F403
from .multitask import *  # noqa: F403
from .schema import *  # noqa: F403
from .sources import *  # noqa: F403
from .sources import _model_config_schema, _training_schema, _training_schema_imported  # noqa: F401
