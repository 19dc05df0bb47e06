"""Project-wide exception types."""


class DataError(ValueError):
    """Bad input data. The message names the file and the value at fault."""


class ConfigError(ValueError):
    """Invalid configuration. Raised before any work starts."""


class TrainingDiverged(ValueError):
    """A training loss became NaN or infinite. The message names the step."""
