"""User-facing errors.  Each carries a one-line message that names the
problem and the fix; the CLI prints it as ``error: <message>`` and exits 2."""


class NeurocompError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 2


class ModelLoadError(NeurocompError):
    """A model file is missing, unreadable, or not a Keras model."""


class UnsupportedLayerError(NeurocompError):
    """The model uses a layer (or layer option) neurocomp cannot convert."""


class HwConfigError(NeurocompError):
    """A hardware configuration is unknown or invalid."""


class DataError(NeurocompError):
    """A data file has the wrong content, shape or dtype."""


class HardwareLimitError(NeurocompError):
    """The network exceeds a limit of the target hardware."""


class BackendUnavailableError(NeurocompError):
    """A backend needs software that is not installed (e.g. lava-loihi)."""
