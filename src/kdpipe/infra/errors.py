"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""


class KdpipeError(Exception):
    """Base class for every error that names what is wrong in the user's input or environment."""


class ConfigError(KdpipeError):
    """params.yaml (or a -p override) has an unknown key, a wrong type or an impossible value."""


class DataError(KdpipeError):
    """A data file is missing, truncated, corrupt or inconsistent."""


class TeacherMismatchError(KdpipeError):
    """The teacher was trained for other classes than the prepared data has."""


class NonFiniteLossError(KdpipeError):
    """Training produced a NaN or Inf loss; the last good checkpoint is left in place."""


class TrackingError(KdpipeError):
    """The MLflow tracking server or store cannot be reached or refused a request."""


class WriteError(KdpipeError):
    """A file could not be written (no space, read-only, permission); the previous file is left intact."""


class ForeignFileError(KdpipeError):
    """A model or checkpoint file is empty, truncated, not kdpipe's, or holds code that kdpipe refuses to run."""


class WorkdirBusyError(KdpipeError):
    """Another kdpipe process holds the output directories this step would write."""


class TrackingOutageError(TrackingError):
    """MLflow went away during a step and did not come back within ``tracking.retry_seconds``."""


class UnknownNameError(ConfigError, ValueError):
    """A name no table has; ConfigError so the CLI prints it on one line, ValueError so pydantic reports its key."""


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (Kubernetes' eviction, preemption or node drain): it stops as an interrupt does,
    keeping its last checkpoint, and its MLflow run ends KILLED rather than FAILED."""
