"""The one exception type the engine raises for problems a user can fix."""

from __future__ import annotations


class FootprintError(Exception):
    """A problem with the user's input or environment.

    ``str(error)`` is a complete, single-line message meant for the user
    (command line stderr, QGIS message bar); it says what is wrong and, where
    possible, how to fix it.
    """


class CancelledError(FootprintError):
    """The user cancelled a running extraction."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)
