"""Shared pytest fixtures.

* ``digits`` -- sklearn 8x8 digits ``(x_train, y_train, x_test, y_test)``,
  x in [0, 1] with shape ``(N, 8, 8, 1)`` (session scope).
* ``mnist`` -- ``shared/datasets/mnist.npz`` as uint8 arrays; skips the test
  when the file is absent.
* ``session_tmp`` -- a temporary folder for the whole session (per worker).
* ``zoo_cache`` -- a folder shared by all pytest-xdist workers of the session
  where trained zoo models are cached (each is trained once per session).
* ``zoo`` -- ``zoo(name) -> (model, x_test)`` through that cache.

Markers: ``slow`` (deselect with ``-m "not slow"``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers share the cores: one TensorFlow thread pool each avoids
    # oversubscription (respecting values the user set).
    _n = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(_n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import neurocomp  # noqa: F401  sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

sys.path.insert(0, str(Path(__file__).resolve().parent))  # keras_zoo importable


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def digits():
    from keras_zoo import load_digits_data
    return load_digits_data()


@pytest.fixture(scope="session")
def mnist():
    from keras_zoo import MNIST_PATH, load_mnist
    if not MNIST_PATH.exists():
        pytest.skip(f"MNIST file not found at {MNIST_PATH}")
    return load_mnist()


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by every worker of this run
    d = base / "zoo_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def zoo(zoo_cache):
    from keras_zoo import MNIST_PATH, NEEDS_MNIST, load_or_build

    def get(name: str):
        if name in NEEDS_MNIST and not MNIST_PATH.exists():
            pytest.skip(f"MNIST file not found at {MNIST_PATH}")
        return load_or_build(name, zoo_cache)
    return get
