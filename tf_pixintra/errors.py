"""Project-wide exception types."""


class DataError(ValueError):
    """Bad input data. The message names the file and the value at fault."""


class ConfigError(ValueError):
    """Invalid configuration. Raised before any work starts."""


class TrainingDiverged(ValueError):
    """A training loss became NaN or infinite. The message names the step."""


class PeerTimeout(RuntimeError):
    """A multi-worker peer's files did not appear in time. The message names
    the waiting worker and the missing files."""
