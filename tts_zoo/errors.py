"""User-facing errors: each says what, where and what to do, in one line per problem.

The CLI prints them without a traceback and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional


class TTSZooError(Exception):
    """Base class of the errors a user can fix (bad input, missing file, unknown name)."""

    exit_code = 2


class UnknownComponentError(TTSZooError, KeyError):
    """A recipe or call names a component that is not registered (or not of the expected kind)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ComponentNotImplementedError(TTSZooError, NotImplementedError):
    """The component is registered (its name and params validate) but cannot be built yet."""


class ComponentImportError(TTSZooError, ImportError):
    """The component's module failed to import (a broken or incompatible plugin)."""


class CatalogueError(TTSZooError):
    """A plugin's ``registry.yaml`` is wrong (a parameter type outside the grammar, an undeclared
    kind); the message names the file and the entry, and the plugin's author fixes it."""


class ComponentBuildError(TTSZooError):
    """A component's constructor refused its (validated) arguments with a ``ValueError`` or
    ``TypeError``; the message names the recipe key and the component, the original is ``__cause__``."""


class CheckpointError(TTSZooError):
    """A weight file is missing, unreadable or does not match the model (missing/unexpected keys)."""


class MissingWeightsError(CheckpointError, FileNotFoundError):
    """Pretrained weights are not on this machine; the message says what to download and where."""


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file and 1-based line, or a command-line override."""

    file: str
    line: Optional[int] = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class RecipeIssue:
    """One problem in a recipe: where, the dotted key and the message (with any suggestion)."""

    location: Optional[Location]
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class RecipeError(TTSZooError):
    """A recipe failed validation; ``issues`` lists every problem found (all at once)."""

    def __init__(self, issues: Iterable[RecipeIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" — did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
