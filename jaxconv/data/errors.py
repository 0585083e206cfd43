"""Exceptions raised by :mod:`jaxconv.data`.

One base class so that a training script can catch every data problem with a
single ``except DataError`` and print its message, which always says what is
wrong and how to fix it.
"""


class DataError(Exception):
    """A dataset could not be found, verified, prepared or read."""


class DatasetNotFoundError(DataError):
    """No usable copy of the dataset exists in any of the places searched.

    The message lists the expected file names, every place searched and the
    ways to supply the data.
    """


class ChecksumError(DataError):
    """A data file does not match its registered size and sha256.

    Raised for truncated, altered or wrongly downloaded files; the message
    names the file and gives expected and actual size and digest.
    """

    def __init__(self, message: str, *, path=None, filename: str | None = None):
        super().__init__(message)
        self.path = path
        self.filename = filename
