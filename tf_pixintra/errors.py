"""Project-wide exception types."""


class DataError(ValueError):
    """Bad input data. The message names the file and the value at fault."""


class ConfigError(ValueError):
    """Invalid configuration. Raised before any work starts."""
