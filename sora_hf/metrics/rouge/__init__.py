"""The `rouge` evaluate module of sora_hf; load it with `sora_hf.metrics.load_metric("rouge")`."""
