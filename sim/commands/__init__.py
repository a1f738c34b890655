"""One module per ``gpusim`` subcommand. Each defines NAME, HELP,
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status)."""

COMMANDS = [
    "catalog",
    "topology",
    "run",
    "train_estimate",
    "serve_estimate",
    "validate",
    "scaling_law",
    "sweep",
    "capacity",
    "compare",
]
