"""HTTP serving of Sora (and any transformers) pipelines: FastAPI app, dynamic batcher, Prometheus metrics.

```python
import sora_hf
from sora_hf.serving import ServerSettings, create_app, load_pipeline, serve

serve("runs/cmp/sentiment-full", port=8000)              # what `sora-hf serve` runs
pipe, task = load_pipeline("runs/cmp/sentiment-full")    # or embed the app in your own ASGI server
app = create_app(pipe, task, settings=ServerSettings(max_batch_size=16, max_wait_ms=2))
```
"""

from .app import (
    ServerSettings,
    create_app,
    describe_validation_errors,
    load_pipeline,
    pipeline_batch_function,
    task_model_class,
)
from .batching import DynamicBatcher
from .errors import RequestError
from .metrics import ServingMetrics
from .protocol import TimedH11Protocol, timed_h11_protocol
from .server import check_serve_arguments, serve
from .tasks import TASKS, TaskSpec, infer_task

__all__ = [
    "TASKS",
    "DynamicBatcher",
    "RequestError",
    "ServerSettings",
    "ServingMetrics",
    "TaskSpec",
    "TimedH11Protocol",
    "check_serve_arguments",
    "create_app",
    "describe_validation_errors",
    "infer_task",
    "load_pipeline",
    "pipeline_batch_function",
    "serve",
    "task_model_class",
    "timed_h11_protocol",
]
