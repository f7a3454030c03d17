"""Keep TensorFlow, Keras, absl and Lava chatter off the terminal."""
from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Silence third-party logs and warnings (call before importing them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "keras", "h5py", "matplotlib", "lava", "PIL"):
        logging.getLogger(name).setLevel(logging.ERROR)
