"""What a saved `SoraForSentenceEmbedding` folder needs so that sentence-transformers loads it with its own head.

Without a `modules.json`, sentence-transformers wraps any folder in its own `Transformer` (the bare encoder, via
`AutoModel`) plus a mean `Pooling`, which silently drops the trained pooler (CLS or multi-level); the `modules.json`
written here names sora_hf's module that runs the head itself (`sora_hf.sentence_transformers_module`). Its own file,
imported by `modeling_sora.py` and copied beside it, so that it travels to the Hub as remote code; it imports only
the standard library.
"""

import json
import os

SENTENCE_TRANSFORMERS_MODULE = "sora_hf.sentence_transformers_module.SoraSentenceEmbeddingModule"


def write_modules_json(save_directory: str | os.PathLike) -> None:
    """Write `modules.json` into a saved folder, unless the folder's one already starts with this head (a
    sentence-transformers pipeline built on it, e.g. with `Normalize` after it)."""
    if not os.path.isdir(save_directory):
        return
    path = os.path.join(save_directory, "modules.json")
    try:
        with open(path, encoding="utf-8") as f:
            if json.load(f)[0]["type"] == SENTENCE_TRANSFORMERS_MODULE:
                return
    except (OSError, ValueError, LookupError, TypeError):
        pass
    module = {"idx": 0, "name": "0", "path": "", "type": SENTENCE_TRANSFORMERS_MODULE}
    with open(path, "w", encoding="utf-8") as f:
        json.dump([module], f, indent=2)
