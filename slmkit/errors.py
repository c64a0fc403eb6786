"""Error types that slmkit raises for bad input.

Every message names the file, field or line at fault so that a user can fix it without a traceback.
"""


class SlmkitError(Exception):
    """Base class: an error the user can fix from its message alone."""


class ConfigError(SlmkitError):
    """A recipe, config file or command-line override is invalid."""


class DataError(SlmkitError):
    """A data file is malformed or misses a required field."""


class ModelError(SlmkitError):
    """A model or tokenizer cannot be built, loaded or combined as asked."""
