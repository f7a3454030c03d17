"""The command line in a subprocess: exit codes, one-line errors, tables."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

NEUROCOMP = [sys.executable, "-m", "neurocomp.cli"]


def run(*args, cwd=None):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(NEUROCOMP + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in r.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    import keras
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("cli")
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)], name="tiny_cnn")
    m.save(d / "ok.keras")
    lstm = keras.Sequential([keras.layers.Input((5, 3)), keras.layers.LSTM(4, name="my_lstm"),
                             keras.layers.Dense(2)])
    lstm.save(d / "lstm.keras")
    (d / "text.keras").write_text("this is not a model\n")
    (d / "empty.keras").write_bytes(b"")
    raw = (d / "ok.keras").read_bytes()
    (d / "truncated.keras").write_bytes(raw[: len(raw) // 2])
    return d


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("inspect", "hw", "demo"):
        assert cmd in r.stdout


def test_inspect_prints_layer_table(model_files):
    r = run("inspect", model_files / "ok.keras")
    assert r.returncode == 0, r.stderr
    for word in ("conv2d", "dense", "(6, 6, 4)", "neurons", "synapses", "total"):
        assert word in r.stdout
    # 6*6*4 conv neurons with 3*3*1 synapses each
    assert f"{6 * 6 * 4 * 9:,}" in r.stdout


@pytest.mark.parametrize("name, needles", [
    ("missing.keras", ["missing.keras"]),
    ("text.keras", ["text.keras"]),
    ("empty.keras", ["empty.keras"]),
    ("truncated.keras", ["truncated.keras"]),
    ("lstm.keras", ["my_lstm", "LSTM", "supported"]),
])
def test_inspect_bad_inputs(model_files, name, needles):
    assert_one_line_error(run("inspect", model_files / name), *needles)


def test_hw_list_and_show():
    r = run("hw", "list")
    assert r.returncode == 0 and all(n in r.stdout for n in ("loihi1", "loihi2", "tiny"))
    r = run("hw", "show", "loihi1")
    assert r.returncode == 0 and "core.neurons" in r.stdout and "1024" in r.stdout


def test_hw_show_unknown_and_corrupt(tmp_path):
    assert_one_line_error(run("hw", "show", "loihi9"), "loihi9", "loihi2")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert_one_line_error(run("hw", "show", bad), "bad.yaml")


def test_usage_errors_are_one_line():
    assert_one_line_error(run("no-such-command"), "no-such-command")
    assert_one_line_error(run("inspect"), "MODEL")
