"""neurocomp: compile trained Keras models into spiking networks for Loihi-style chips."""
import os as _os

# TensorFlow prints C++ start-up chatter on import; keep it quiet unless asked.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


def compile(model, calib=None, hw="loihi2", options=None, **option_overrides):
    """Compile a Keras model into a spiking network; see ``neurocomp.compiler.compile``."""
    from neurocomp.compiler import compile as _compile
    return _compile(model, calib=calib, hw=hw, options=options, **option_overrides)
