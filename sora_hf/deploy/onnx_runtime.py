"""Running exported Sora graphs with onnxruntime alone (no torch model in memory).

`OnnxSequenceClassifier(folder)(texts)` returns what `pipeline("text-classification")` returns for the same
checkpoint; `OnnxCausalLM(folder).generate(input_ids, max_new_tokens=...)` is greedy decoding through the exported
decoding step with its key/value cache, token for token what `model.generate(do_sample=False)` gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import AutoConfig, AutoTokenizer

from .onnx_export import EXPORT_INFO_FILE, ONNX_FILE


def ort_session(path: str | Path, threads: int | None = None):
    """A CPU onnxruntime session; `threads` fixes intra-op threads (benchmarks compare at equal threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported folder: the onnxruntime session, the config, the export record and the tokenizer (if saved)."""

    def __init__(self, folder: str | Path, threads: int | None = None, onnx_file: str = ONNX_FILE):
        self.folder = Path(folder)
        if not (self.folder / onnx_file).is_file():
            raise FileNotFoundError(f"{self.folder} has no {onnx_file}; export it with `sora-hf export onnx`")
        self.session = ort_session(self.folder / onnx_file, threads)
        self.config = AutoConfig.from_pretrained(self.folder)
        info_path = self.folder / EXPORT_INFO_FILE
        self.info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.tokenizer = (
            AutoTokenizer.from_pretrained(self.folder) if (self.folder / "tokenizer_config.json").is_file() else None
        )

    def run(self, **inputs) -> dict[str, np.ndarray]:
        """Feed numpy (or torch) arrays by name; `token_type_ids` defaults to zeros; outputs by name."""
        feed = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None and name == "token_type_ids":
                value = np.zeros_like(np.asarray(inputs["input_ids"]))
            if value is None:
                raise ValueError(f"the ONNX graph needs input {name!r}; got {sorted(inputs)}")
            feed[name] = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
            feed[name] = feed[name].astype(np.int64) if feed[name].dtype.kind in "iub" else feed[name]
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class OnnxSequenceClassifier(OnnxModel):
    """Text classification on an exported `SoraForSequenceClassification`, shaped like transformers' pipeline.

    `clf("好评")` -> `[{"label": ..., "score": ...}]`; a list of texts gives one dict per text; `top_k=None` gives
    every label sorted by score. Scores are softmax for single-label models and sigmoid for multi-label or single
    output models, as `TextClassificationPipeline` does. `clf.logits(texts)` gives the raw logits.
    """

    def __init__(self, folder: str | Path, threads: int | None = None, max_length: int | None = None, **kwargs):
        super().__init__(folder, threads, **kwargs)
        if self.info.get("architecture", "SoraForSequenceClassification") != "SoraForSequenceClassification":
            raise ValueError(f"{folder} holds a {self.info['architecture']} export, not a sequence classifier")
        if self.tokenizer is None:
            raise ValueError(f"{folder} has no tokenizer files; export with a tokenizer to classify texts")
        self.max_length = max_length

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            out.append(self.run(**enc)["logits"])
        return np.concatenate(out) if out else np.zeros((0, self.config.num_labels), dtype=np.float32)

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        problem = self.config.problem_type
        if problem == "multi_label_classification" or self.config.num_labels == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        return _softmax(logits)

    def __call__(self, texts: str | list[str], top_k: int | None = 1, batch_size: int = 32):
        single = isinstance(texts, str)
        scores = self._scores(self.logits([texts] if single else list(texts), batch_size))
        results = []
        for row in scores:
            order = np.argsort(-row)
            ranked = [{"label": self.config.id2label[int(i)], "score": float(row[i])} for i in order]
            results.append(ranked[:top_k] if top_k is not None else ranked)
        if top_k == 1:
            results = [r[0] for r in results]
            return [results[0]] if single else results
        return results[0] if single else results


class OnnxCausalLM(OnnxModel):
    """Greedy decoding with an exported `SoraForCausalLM` decoding step and its explicit key/value cache."""

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 20) -> np.ndarray:
        """Prompt ids `(batch, seq)` (left-padded when batched) -> prompt plus greedy continuation.

        Stops when every row has produced `eos_token_id` or after `max_new_tokens`; finished rows are filled with
        the pad id, as `GenerationMixin.generate(do_sample=False)` does.
        """
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        config = self.config
        batch = ids.shape[0]
        past = {
            name: np.zeros((batch, config.num_key_value_heads, 0, config.head_dim), dtype=np.float32)
            for name in self.input_names
            if name.startswith("past_key_values.")
        }
        eos = config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        finished = np.zeros(batch, dtype=bool)
        step_ids, sequences = ids, ids
        for _ in range(max_new_tokens):
            positions = np.clip(mask.cumsum(-1) - 1, 0, None)[:, -step_ids.shape[1] :]
            positions = np.where(mask[:, -step_ids.shape[1] :] == 0, 1, positions)
            out = self.run(input_ids=step_ids, attention_mask=mask, position_ids=positions, **past)
            next_ids = out["logits"][:, -1].argmax(-1)
            next_ids = np.where(finished, pad, next_ids)
            sequences = np.concatenate([sequences, next_ids[:, None]], axis=1)
            finished |= np.isin(next_ids, list(eos))
            if finished.all():
                break
            past = {
                name: out[name.replace("past_key_values.", "present.")]
                for name in self.input_names
                if name.startswith("past_key_values.")
            }
            step_ids = next_ids[:, None]
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        return sequences


__all__ = ["OnnxCausalLM", "OnnxModel", "OnnxSequenceClassifier", "ort_session"]
