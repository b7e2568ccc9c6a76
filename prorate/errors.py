"""The one error the arithmetic raises: a code for machines and a sentence for the operator."""

from __future__ import annotations


class ProrateError(ValueError):
    """Inputs that cannot be computed (missing or contradictory baseline, end before start, ...).

    `code` is stable and machine-readable; `message` is shown to operators as it is.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
