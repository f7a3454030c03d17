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
    """Exit 2, no traceback, and exactly one error line -- the last thing on stderr
    (progress lines may precede it)."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    for n in needles:
        assert n.lower() in errors[0].lower(), (n, errors[0])


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


# -- compile / simulate -----------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    import keras
    from neurocomp.demo import digits_data
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("bundle")
    x_tr, x_te, y_tr, y_te = digits_data()
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                          keras.layers.AveragePooling2D(2, name="pool"), keras.layers.Flatten(),
                          keras.layers.Dense(24, activation="relu", name="fc"),
                          keras.layers.Dense(10, name="logits")], name="cli_cnn")
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x_tr, y_tr, epochs=20, verbose=0)
    m.save(d / "cnn.keras")
    np.savez(d / "calib.npz", x_train=x_tr[:300], y_train=y_tr[:300])
    np.savez(d / "test.npz", x_test=x_te[:60, :, :, 0], y_test=y_te[:60])   # no channel axis: added
    return d


def compile_bundle(d, out, *extra):
    return run("compile", d / "cnn.keras", "-o", out, "--calib", d / "calib.npz", *extra)


def test_compile_writes_a_complete_bundle(digits_files, tmp_path):
    import json
    out = tmp_path / "b"
    r = compile_bundle(digits_files, out, "--mode", "sigma-delta", "--steps", "20")
    assert r.returncode == 0, r.stderr
    for f in ("lowered.json", "lowered.npz", "model.json", "model.npz", "summary.json", "report.md",
              "mapping.json"):
        assert (out / f).exists(), f
    from neurocomp.bundle import load_bundle
    from neurocomp.hw import load_hw
    from neurocomp.mapping import Mapping, check_mapping
    mapping = Mapping.from_json((out / "mapping.json").read_text())
    assert check_mapping(load_bundle(out).net, load_hw("loihi2"), mapping) == []
    s = json.loads((out / "summary.json").read_text())
    for key in ("hw", "mode", "latency_steps", "cores", "chips", "layers"):
        assert key in s
    assert s["hw"] == "loihi2" and s["mode"] == "sigma-delta" and s["steps"] == 20
    assert s["latency_steps"] == 5 and s["cores"] == mapping.summary["cores_used"] >= len(s["layers"]) - 1
    assert not list(tmp_path.glob(".b.tmp-*"))                      # no leftovers


def test_simulate_json_contract(digits_files, tmp_path):
    import json
    out = tmp_path / "b"
    assert compile_bundle(digits_files, out).returncode == 0
    r = run("simulate", out, "--data", digits_files / "test.npz", "--json", "--limit", "40",
            "--record", tmp_path / "rec.npz")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for key in ("accuracy", "samples", "steps", "latency_steps", "backend", "seconds", "predictions",
                "spikes_per_sample"):
        assert key in res
    assert res["samples"] == 40 and len(res["predictions"]) == 40 and res["backend"] == "event"
    assert res["accuracy"] > 0.8 and res["spikes_per_sample"] > 0
    rec = np.load(tmp_path / "rec.npz")
    assert set(rec.files) == {"conv", "fc", "logits"}     # rate mode folds the average pool into fc
    assert rec["conv"].dtype == bool and rec["conv"].shape == (40, res["steps"], 6 * 6 * 6)


@pytest.mark.xdist_group("lava")
@pytest.mark.parametrize("mode", ["rate", "sigma-delta"])
def test_event_lava_and_netx_recordings_are_identical(digits_files, tmp_path, mode):
    import json
    out = tmp_path / "b"
    assert compile_bundle(digits_files, out, "--mode", mode, "--steps", "12", "--netx").returncode == 0
    assert (out / "network.net").exists()
    results = {}
    for backend in ("event", "lava", "netx"):
        r = run("simulate", out, "--data", digits_files / "test.npz", "--json", "--limit", "3",
                "--backend", backend, "--record", tmp_path / f"{backend}.npz")
        assert r.returncode == 0, r.stderr
        results[backend] = json.loads(r.stdout)
    a = np.load(tmp_path / "event.npz")
    assert any(a[k].any() for k in a.files)
    for other in ("lava", "netx"):
        assert results["event"]["predictions"] == results[other]["predictions"]
        assert results["event"]["spikes_per_sample"] == results[other]["spikes_per_sample"]
        b = np.load(tmp_path / f"{other}.npz")
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{other}: {k}")


def test_readout_skip_travels_with_the_bundle(digits_files, tmp_path):
    from neurocomp.bundle import load_bundle
    out = tmp_path / "b"
    assert compile_bundle(digits_files, out, "--mode", "rate", "--readout-skip", "0.5").returncode == 0
    b = load_bundle(out)
    assert b.net.meta["options"]["readout_skip"] == 0.5
    r = run("simulate", out, "--data", digits_files / "test.npz", "--steps", "20")
    assert r.returncode == 0, r.stderr


def test_netx_backend_needs_a_netx_file(digits_files, tmp_path):
    from neurocomp.bundle import load_bundle
    out = tmp_path / "b"
    # bursts too are beyond NetX (and the bundle keeps them)
    assert compile_bundle(digits_files, out, "--mode", "rate-soft", "--spikes-per-step", "2").returncode == 0
    assert not (out / "network.net").exists()
    net = load_bundle(out).net
    assert {p.neuron.burst for p in net.populations.values() if p.neuron.kind == "lif"} == {1, 2}
    r = run("simulate", out, "--data", digits_files / "test.npz", "--backend", "netx")
    assert_one_line_error(r, "network.net", "subtract")


def test_compile_errors(digits_files, tmp_path):
    d = digits_files
    # no calibration data
    r = run("compile", d / "cnn.keras", "-o", tmp_path / "x")
    assert_one_line_error(r, "--calib")
    assert not (tmp_path / "x").exists()
    # OUT is a file
    (tmp_path / "file").write_text("x")
    assert_one_line_error(compile_bundle(d, tmp_path / "file"), "file")
    # calibration data of the wrong shape
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 7, 7)))
    r = run("compile", d / "cnn.keras", "-o", tmp_path / "y", "--calib", tmp_path / "bad.npz")
    assert_one_line_error(r, "shape")
    assert not (tmp_path / "y").exists()
    assert_one_line_error(compile_bundle(d, tmp_path / "z", "--hw", "loihi9"), "loihi9")
    # bursts need rate-soft's neuron
    assert_one_line_error(compile_bundle(d, tmp_path / "w", "--mode", "rate", "--spikes-per-step", "2"),
                          "spikes-per-step", "rate-soft")
    assert not (tmp_path / "w").exists()
    # the read-out skip applies to the rate modes' membrane and count read-outs
    assert_one_line_error(compile_bundle(d, tmp_path / "v", "--mode", "sigma-delta", "--readout-skip", "0.5"),
                          "readout-skip")
    assert_one_line_error(compile_bundle(d, tmp_path / "u", "--mode", "rate", "--readout-skip", "1"),
                          "readout")


def test_failed_compile_leaves_existing_bundle_untouched(digits_files, tmp_path):
    out = tmp_path / "b"
    assert compile_bundle(digits_files, out).returncode == 0
    def files():
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    before = files()
    assert "report.html" in before and "figures/raster.png" in before
    np.savez(tmp_path / "nan.npz", x=np.full((5, 8, 8, 1), np.nan))
    r = run("compile", digits_files / "cnn.keras", "-o", out, "--calib", tmp_path / "nan.npz")
    assert_one_line_error(r, "NaN")
    assert files() == before


def test_simulate_errors(digits_files, tmp_path):
    out = tmp_path / "b"
    assert compile_bundle(digits_files, out).returncode == 0
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 8, 8, 1)), y=np.array([0, 1, 2, 99]))
    assert_one_line_error(run("simulate", out, "--data", tmp_path / "labels.npz"), "99")
    np.savez(tmp_path / "shape.npz", x=np.zeros((4, 9, 9, 1)))
    assert_one_line_error(run("simulate", out, "--data", tmp_path / "shape.npz"), "(9, 9, 1)")
    (tmp_path / "junk.npz").write_text("not a zip")
    assert_one_line_error(run("simulate", out, "--data", tmp_path / "junk.npz"), "junk.npz")
    assert_one_line_error(run("simulate", tmp_path / "nope", "--data", tmp_path / "shape.npz"), "nope")
    assert_one_line_error(run("simulate", out, "--data", digits_files / "test.npz", "--backend", "loihi2"),
                          "lava-loihi")
    assert_one_line_error(run("simulate", out, "--data", digits_files / "test.npz", "--backend", "tpu"), "tpu")


def test_demo_fast_variant(tmp_path):
    """`neurocomp demo` end to end, cut down (one mode, 3 epochs, 1 Lava sample)."""
    import json
    out = tmp_path / "demo"
    r = run("demo", "-o", out, "--mode", "sigma-delta", "--epochs", "3", "--lava-samples", "1")
    assert r.returncode == 0, r.stderr
    for word in ("sigma-delta", "ANN acc", "SNN acc", "cores", "spikes/inf", "x Lava", "bit-exact",
                 "report.html"):
        assert word in r.stdout, word
    row = next(ln for ln in r.stdout.splitlines() if "sigma-delta" in ln and "%" in ln)
    assert "yes" in row                                   # Lava agreed with the event simulator
    for f in ("digits_cnn.keras", "digits_test.npz", "digits_calib.npz", "report.md", "report.html",
              "report.json", "figures/accuracy_vs_steps.png", "bundle-sigma-delta/summary.json",
              "bundle-sigma-delta/report.html", "bundle-sigma-delta/figures/raster.png"):
        assert (out / f).exists(), f
    rep = json.loads((out / "report.json").read_text())
    res, curve = rep["results"]["sigma-delta"], rep["curves"]["sigma-delta"]["snn"]
    assert curve[res["steps"] - 1] == res["snn"] and res["exact"] is True
    assert f"{res['snn']:.2%}" in row
    for noise in ("oneDNN", "absl", "I0000", "WARNING", "Warning"):
        assert noise not in r.stderr, noise
    # the bundle it wrote runs
    r = run("simulate", out / "bundle-sigma-delta", "--data", out / "digits_test.npz", "--limit", "20", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["samples"] == 20, r.stderr
