"""The `precision_recall_f1` evaluate module of sora_hf; load it with `sora_hf.metrics.load_metric("precision_recall_f1")`."""
