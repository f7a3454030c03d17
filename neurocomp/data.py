"""Reading user data files (``.npz`` with ``x``/``y`` or Keras-style names)."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from neurocomp.errors import DataError

X_KEYS = {"test": ("x", "x_test"), "calib": ("x_calib", "x_train", "x", "x_test")}
Y_KEYS = {"x": "y", "x_test": "y_test", "x_train": "y_train", "x_calib": "y_calib"}


def read_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path`` (no pickled objects); a file
    that is not an ``.npz`` archive of plain arrays is a one-line ``DataError``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist; pass an .npz with arrays x and y "
                        "(or x_test and y_test)")
    if path.is_dir():
        raise DataError(f"data path '{path}' is a directory; pass an .npz file")
    fix = "save it with numpy.savez(path, x=..., y=...)"
    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        if "pickle" in str(e):
            raise DataError(f"'{path}' holds pickled Python objects, which neurocomp does not load; {fix} "
                            "with numeric arrays") from None
        raise DataError(f"cannot read '{path}' as a numpy .npz file ({type(e).__name__}); {fix}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"'{path}' is a single .npy array, not an .npz archive of named arrays; {fix}")
    try:
        with z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"'{path}' holds object arrays (pickled Python objects), which neurocomp does "
                            f"not load; {fix} with numeric arrays") from None
        raise DataError(f"cannot read '{path}' as a numpy .npz file ({type(e).__name__}); {fix}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"'{path}' is a damaged .npz archive ({type(e).__name__}: truncated?); {fix}") from None


def load_npz(path: Path | str, input_shape: tuple, purpose: str = "test", n_classes: Optional[int] = None,
             limit: Optional[int] = None, arrays: Optional[dict] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``(x, y)`` from an ``.npz``: ``x`` shaped ``(N, *input_shape)`` as float64
    (a missing trailing channel axis of 1 is added), ``y`` int labels or None.

    ``purpose="test"`` reads ``x``/``y`` or ``x_test``/``y_test``;
    ``"calib"`` prefers ``x_calib``, then ``x_train``, ``x``, ``x_test``.
    Every problem is a one-line ``DataError`` naming the file and the fix.
    ``arrays``: the file's arrays when already read with :func:`read_npz`.
    """
    path = Path(path)
    if arrays is None:
        arrays = read_npz(path)
    key = next((k for k in X_KEYS[purpose] if k in arrays), None)
    if key is None:
        raise DataError(f"'{path}' has no input array (looked for {', '.join(X_KEYS[purpose])}; found "
                        f"{', '.join(sorted(arrays)) or 'nothing'}); save the inputs as 'x'")
    x = arrays[key]
    if x.dtype.kind not in "biuf":
        raise DataError(f"'{path}': array '{key}' has dtype {x.dtype}; inputs must be numbers: save them "
                        "as float32 (e.g. x.astype('float32'))")
    want = tuple(int(d) for d in input_shape)
    if tuple(x.shape[1:]) != want:
        if tuple(x.shape[1:]) + (1,) == want:
            x = x[..., None]
        else:
            raise DataError(f"'{path}': '{key}' holds samples of shape {tuple(x.shape[1:])}, the model "
                            f"takes {want}; reshape the data to (N, {', '.join(map(str, want))})")
    if len(x) == 0:
        raise DataError(f"'{path}': '{key}' holds no samples; pass at least one input")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError(f"'{path}': '{key}' contains NaN or infinite values; clean the data first")
    y = arrays.get(Y_KEYS[key])
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:          # one-hot labels
            y = y.argmax(axis=1)
        y = y.reshape(-1)
        if y.dtype.kind not in "biu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
            raise DataError(f"'{path}': labels '{Y_KEYS[key]}' must be integers, got {y.dtype}; save class "
                            "indices (e.g. y.astype('int64'))")
        y = y.astype(np.int64)
        if len(y) != len(x):
            raise DataError(f"'{path}': {len(x)} inputs but {len(y)} labels in '{Y_KEYS[key]}'; save one label "
                            "per input")
        if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
            raise DataError(f"'{path}': labels range {y.min()}..{y.max()} but the model has {n_classes} "
                            f"outputs (0..{n_classes - 1}); pass labels as class indices of this model")
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    return x, y
