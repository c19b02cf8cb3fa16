"""Open checkpoints into Sora and back: `convert` reads a transformers checkpoint (Llama, Mistral, Qwen2, Qwen3)
and writes the Sora model with the same outputs; `export_llama` writes a Llama-compatible Sora decoder as a plain
`LlamaForCausalLM` folder that every Llama engine serves without remote code. Both measure parity before writing.

- `sources`: which architectures convert, and the `SoraConfig` options that reproduce each one's maths;
- `parity`: the comparison on a few inputs (logits, hidden states, greedy tokens) recorded in `parity.json`;
- `trim`: `trim_vocabulary` keeps only the vocabulary pieces a corpus uses (same pieces and outputs on it);
- `convert` / `export`: the two commands, which write through `sora_hf.folders.outputs` (nothing is overwritten without
  `overwrite=True`, nothing at all is written when parity fails).
"""

from .convert import convert
from .export import export_llama
from .parity import ParityReport
from .sources import SOURCES, ConversionError
from .trim import TrimError, TrimReport, corpus_texts, split_cjk_characters, trim_vocabulary

__all__ = [
    "SOURCES",
    "ConversionError",
    "ParityReport",
    "TrimError",
    "TrimReport",
    "convert",
    "corpus_texts",
    "export_llama",
    "split_cjk_characters",
    "trim_vocabulary",
]
