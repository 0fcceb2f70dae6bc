"""One module per `dsllm` command: `add_arguments(parser)` and `run(args) -> int`."""
