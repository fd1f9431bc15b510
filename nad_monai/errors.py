"""The one exception type that user-facing code reports as a one-line message."""

from __future__ import annotations

import os


class InputError(ValueError):
    """A user-supplied file or folder that cannot be used, reported as ``"<path>: <problem>"``.

    The message is always a single line, so command-line tools can print it without a traceback.

    Args:
        path: the offending file or folder.
        problem: what is wrong with it; newlines are folded into spaces.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")
