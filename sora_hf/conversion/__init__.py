"""Open checkpoints into Sora and back: `convert` reads a transformers checkpoint (Llama, Mistral, Qwen2, Qwen3)
and writes the Sora model with the same outputs; `export_llama` writes a Llama-compatible Sora decoder as a plain
`LlamaForCausalLM` folder that every Llama engine serves without remote code. Both measure parity before writing.

- `sources`: which architectures convert, and the `SoraConfig` options that reproduce each one's maths;
- `parity`: the comparison on a few inputs (logits, hidden states, greedy tokens) recorded in `parity.json`;
- `convert` / `export`: the two commands, which write through `sora_hf.outputs` (nothing is overwritten without
  `overwrite=True`, nothing at all is written when parity fails).
"""

from .convert import convert
from .export import export_llama
from .parity import ParityReport
from .sources import SOURCES, ConversionError

__all__ = ["SOURCES", "ConversionError", "ParityReport", "convert", "export_llama"]
