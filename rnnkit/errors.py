"""The exceptions the CLI turns into one-line messages (library code raises only these for user mistakes)."""


class RnnkitError(Exception):
    """A failure the user can act on; the CLI prints the message and exits with `exit_code`."""

    exit_code = 1


class UsageError(RnnkitError):
    """A bad option, option combination or argument on the command line."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or `--set` override that does not validate."""


class DataError(RnnkitError):
    """A corpus or dataset file that is missing, unreadable or malformed."""


class DownloadError(DataError):
    """A download that failed or whose checksum does not match."""


class VocabularyError(RnnkitError):
    """A character that is not in the run's vocabulary (prompts, encoded text)."""

    exit_code = 2


class CheckpointError(RnnkitError):
    """A run folder or checkpoint that is missing, corrupt, foreign or from a newer format."""


class TrainingError(RnnkitError):
    """Training that cannot go on (non-finite loss, run folder locked by another process)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill` ending the job): handled like Ctrl-C, exit code 143 (128 + 15)."""

    exit_code = 143


def out_of_memory(err: BaseException) -> bool:
    """True for an allocation failure: MemoryError, or PyTorch's CPU/CUDA allocator RuntimeError."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
