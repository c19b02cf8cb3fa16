"""HTTP serving of Sora (and any transformers) pipelines: FastAPI app, dynamic batcher, Prometheus metrics.

```python
import sora_hf
from sora_hf.serving import ServerSettings, create_app, load_pipeline, serve

serve("runs/cmp/sentiment-full", port=8000)              # what `sora-hf serve` runs
pipe, task = load_pipeline("runs/cmp/sentiment-full")    # or embed the app in your own ASGI server
app = create_app(pipe, task, settings=ServerSettings(max_batch_size=16, max_wait_ms=2))
```
"""

from .._lazy import lazy_exports

# the public names of each module, imported on first use: `sora-hf serve --help` reads `settings` alone, without
# FastAPI or torch (PEP 562)
__getattr__, __all__ = lazy_exports(
    __name__,
    app=("create_app", "describe_validation_errors", "load_pipeline", "pipeline_batch_function", "task_model_class"),
    batching=("DynamicBatcher",),
    errors=("RequestError",),
    metrics=("ServingMetrics",),
    protocol=("TimedH11Protocol", "timed_h11_protocol"),
    server=("check_serve_arguments", "serve"),
    settings=("ServerSettings", "settings_flags"),
    tasks=("TASKS", "TaskSpec", "infer_task"),
)
