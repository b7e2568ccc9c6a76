"""Subcommands of `carmileage`, one module each; every module exposes `register(subparsers)`.

A module's `register` adds its parser and sets `func` (args -> exit code). Keep this list sorted.
"""

COMMAND_MODULES: tuple[str, ...] = (
    "broker",
    "calc",
    "evaluate",
    "migrate",
    "ocr",
    "outbox",
    "ownership",
    "periods",
    "providers",
    "report",
    "serve",
    "stats",
    "tokens",
)
