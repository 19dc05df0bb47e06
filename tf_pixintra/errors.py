"""Project-wide exception types, and how the command-line tools report them."""

import sys

from absl import app
from absl import flags


class DataError(ValueError):
    """Bad input data. The message names the file and the value at fault."""


class ConfigError(ValueError):
    """Invalid configuration. Raised before any work starts."""


class TrainingDiverged(ValueError):
    """A training loss became NaN or infinite. The message names the step."""


class PeerTimeout(RuntimeError):
    """A multi-worker peer's files did not appear in time (names the worker and the files)."""


class PeerLost(RuntimeError):
    """A multi-worker peer went away during training (names the checkpoint kept)."""


def cli_main(argv, run, flag_values, status, errors=(ConfigError, DataError)):
    """The body of a CLI's absl `main`: runs `run(flag_values)`; returns the exit status.

    Extra arguments are a usage error; one of `errors` is one line on stderr and `status`.
    """
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        run(flag_values)
    except errors as err:
        sys.stderr.write(f"error: {err}\n")
        return status
    return 0


def absl_main(run, status, errors=(ConfigError, DataError)):
    """The absl `main(argv)` of a command-line tool: `cli_main` over absl's FLAGS."""
    return lambda argv: cli_main(argv, run, flags.FLAGS, status, errors)
