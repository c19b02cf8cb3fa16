"""How Sora meets the Auto factories: the one table of its model classes (`heads.HEADS`), and `register()`, which
registers them with transformers' Auto classes, the Hub custom-code machinery, peft and the pipelines."""
