"""neurocomp: compile trained Keras models into spiking networks for Loihi-style chips."""
import os as _os

# TensorFlow prints C++ start-up chatter on import; keep it quiet unless asked.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
