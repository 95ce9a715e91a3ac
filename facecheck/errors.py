"""Errors that reach the user as a one-line message instead of a traceback."""


class FacecheckError(Exception):
    """A problem with the user's input or environment, explained in words.

    The CLI prints ``facecheck: error: <message>`` and exits non-zero; library
    callers can catch it like any exception.
    """


class DataError(FacecheckError):
    """The data folder or an image in it cannot be used."""


class CheckpointError(FacecheckError):
    """A checkpoint is missing, corrupt or belongs to another kind of model."""


class WeightsError(FacecheckError):
    """Pretrained weights cannot be found or do not verify."""


class ConfigError(FacecheckError):
    """A preset, config file or override is invalid."""


class DiskFullError(FacecheckError, OSError):
    """No space was left on the device for a file facecheck writes (what was there before is kept)."""


class InputError(DataError, ValueError):
    """A Python API call got something it cannot work with (an empty folder, a malformed array).

    Also a ``ValueError``, so callers that catch the built-in kind keep working.
    """


class InputTypeError(InputError, TypeError):
    """A Python API call got an object of a type it does not take."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A path given to the Python API does not exist."""
