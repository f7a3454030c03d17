"""The bad-input corpus: every case runs the real CLI in a subprocess and must end
with one line ``error: <problem>; <fix>`` on stderr, exit code 2, no traceback,
and nothing half-written (no OUT, no hidden temporary directory, no --record
file).  The cases run concurrently (a few of them load TensorFlow, which takes
seconds) and each is then checked as its own test."""
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

NEUROCOMP = [sys.executable, "-m", "neurocomp.cli"]


def run(*args, cwd):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(NEUROCOMP + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


# (id, argv, words the error line must contain); paths are relative to the corpus directory;
# compile cases write to out/<id> (which must not exist afterwards)
COMPILE = [
    ("model-missing", ["missing.keras"], ["missing.keras", "does not exist"]),
    ("model-empty", ["empty.keras"], ["empty.keras", "empty"]),
    ("model-truncated", ["truncated.keras"], ["truncated.keras", "re-save"]),
    ("model-text-named-keras", ["text.keras"], ["text.keras", "not a valid .keras"]),
    ("layer-lstm", ["lstm.keras"], ["my_lstm", "LSTM", "supported layers"]),
    ("layer-attention", ["attention.keras"], ["my_attention", "Attention", "supported layers"]),
    ("weights-nan", ["nan.keras"], ["nan.keras", "non-finite", "retrain"]),
    ("weights-inf", ["inf.keras"], ["inf.keras", "non-finite", "retrain"]),
    ("model-larger-than-chip", ["big.keras", "--hw", "tiny"], ["tiny", "--hw", "larger chip"]),
    ("microcode-on-loihi1", ["ok.keras", "--hw", "loihi1", "--mode", "rate-soft"],
     ["loihi1", "microcoded", "--hw loihi2"]),
    ("graded-spikes-on-loihi1", ["ok.keras", "--hw", "loihi1", "--mode", "sigma-delta"],
     ["loihi1", "graded spikes", "--mode rate"]),
    ("hw-unknown", ["ok.keras", "--hw", "loihi9"], ["loihi9", "did you mean 'loihi2'"]),
    ("hw-yaml-syntax", ["ok.keras", "--hw", "bad.yaml"], ["bad.yaml", "YAML", "line"]),
    ("hw-yaml-schema", ["ok.keras", "--hw", "schema.yaml"], ["schema.yaml", "description"]),
    ("hw-yaml-missing", ["ok.keras", "--hw", "nothere.yaml"], ["nothere.yaml", "not found"]),
    ("calib-missing-option", ["ok.keras", "--no-calib"], ["--calib"]),
    ("calib-wrong-shape", ["ok.keras", "--calib", "shape.npz"], ["shape.npz", "(7, 7)", "(8, 8, 1)"]),
    ("calib-npy-not-npz", ["ok.keras", "--calib", "plain.npy"], ["plain.npy", ".npz"]),
    ("calib-object-arrays", ["ok.keras", "--calib", "objects.npz"], ["objects.npz", "pickled"]),
    ("calib-not-a-zip", ["ok.keras", "--calib", "junk.npz"], ["junk.npz", "numpy.savez"]),
    ("out-is-a-file", ["ok.keras", "-o", "afile"], ["afile", "is a file"]),
    ("out-parent-missing", ["ok.keras", "-o", "nodir/b"], ["nodir", "does not exist"]),
    ("steps-zero", ["ok.keras", "--steps", "0"], ["--steps", "at least 1"]),
]

# simulate cases: (id, bundle, data, extra args, words)
SIMULATE = [
    ("data-wrong-shape", "good", "shape9.npz", [], ["(9, 9, 1)", "reshape"]),
    ("data-string-dtype", "good", "strings.npz", [], ["strings.npz", "dtype", "float32"]),
    ("data-complex-dtype", "good", "complex.npz", [], ["complex", "float32"]),
    ("data-nan-values", "good", "nan_x.npz", [], ["NaN", "clean"]),
    ("data-no-samples", "good", "empty_x.npz", [], ["no samples"]),
    ("data-no-input-array", "good", "nox.npz", [], ["no input array", "'x'"]),
    ("data-not-a-zip", "good", "junk.npz", [], ["junk.npz", "numpy.savez"]),
    ("data-missing", "good", "nothere.npz", [], ["nothere.npz", "does not exist"]),
    ("labels-out-of-range", "good", "labels99.npz", [], ["99", "0..9"]),
    ("labels-negative", "good", "labelsneg.npz", [], ["-1", "0..9"]),
    ("labels-not-integers", "good", "labelsfloat.npz", [], ["must be integers"]),
    ("labels-count", "good", "labelscount.npz", [], ["4 inputs but 3 labels"]),
    ("bundle-missing", "nope", "ok.npz", [], ["nope", "does not exist"]),
    ("bundle-is-a-file", "afile", "ok.npz", [], ["afile", "not a bundle directory"]),
    ("bundle-empty-dir", "emptydir", "ok.npz", [], ["emptydir", "missing summary.json"]),
    ("bundle-summary-corrupt", "b_summary", "ok.npz", [], ["summary.json", "not valid JSON"]),
    ("bundle-foreign-summary", "b_foreign", "ok.npz", [], ["not a neurocomp bundle"]),
    ("bundle-lowered-json-truncated", "b_json", "ok.npz", [], ["lowered.json", "compile the bundle again"]),
    ("bundle-lowered-npz-truncated", "b_npz", "ok.npz", [], ["lowered.npz", "compile the bundle again"]),
    ("bundle-corrupt-no-checksums", "b_json_old", "ok.npz", [], ["corrupt", "lowered.json"]),
    ("bundle-mixed-files", "b_mixed", "ok.npz", [], ["lowered.json", "another bundle"]),
    ("netx-garbage", "b_netx_garbage", "ok.npz", ["--backend", "netx"], ["network.net", "compile the bundle"]),
    ("netx-foreign-hdf5", "b_netx_foreign", "ok.npz", ["--backend", "netx"], ["network.net", "NetX"]),
    ("netx-foreign-checked", "b_netx_foreign_checked", "ok.npz", ["--backend", "netx"],
     ["network.net", "another bundle"]),
    ("backend-unknown", "good", "ok.npz", ["--backend", "tpu"], ["tpu", "--backend"]),
    ("backend-loihi2-missing", "good", "ok.npz", ["--backend", "loihi2"], ["lava-loihi"]),
    ("record-dir-missing", "good", "ok.npz", ["--record", "nodir/rec.npz"], ["nodir", "create it"]),
    ("record-is-a-dir", "good", "ok.npz", ["--record", "emptydir"], ["emptydir", "is a directory"]),
    ("limit-zero", "good", "ok.npz", ["--limit", "0"], ["--limit", "at least 1"]),
]


def _make_models(d: Path):
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)], name="tiny_cnn")
    m.save(d / "ok.keras")
    raw = (d / "ok.keras").read_bytes()
    (d / "truncated.keras").write_bytes(raw[: len(raw) // 2])
    (d / "text.keras").write_text("this is not a model\n")
    (d / "empty.keras").write_bytes(b"")
    w = m.get_weights()
    w[0][0, 0, 0, 0] = np.nan
    m.set_weights(w)
    m.save(d / "nan.keras")
    w[0][0, 0, 0, 0] = np.inf
    m.set_weights(w)
    m.save(d / "inf.keras")
    keras.Sequential([keras.layers.Input((5, 3)), keras.layers.LSTM(4, name="my_lstm"),
                      keras.layers.Dense(2)]).save(d / "lstm.keras")
    inp = keras.Input((5, 4))
    att = keras.layers.Attention(name="my_attention")([inp, inp])
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(att))).save(d / "attention.keras")
    # 2000 hidden neurons feeding one output: fan-in 2000 > 256 axons per core of 'tiny'
    keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(2000, activation="relu"), keras.layers.Dense(10)],
                     name="big").save(d / "big.keras")


def _make_data(d: Path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1)).astype(np.float32)
    np.savez(d / "calib.npz", x_train=x, y_train=rng.integers(0, 10, 40))
    np.savez(d / "ok.npz", x=x[:3], y=np.array([0, 1, 2]))
    np.savez(d / "shape.npz", x=np.zeros((5, 7, 7)))
    np.savez(d / "shape9.npz", x=np.zeros((4, 9, 9, 1)))
    np.savez(d / "strings.npz", x=np.array(["a"] * 64 * 3).reshape(3, 8, 8, 1))
    np.savez(d / "complex.npz", x=np.zeros((3, 8, 8, 1), complex))
    np.savez(d / "nan_x.npz", x=np.full((3, 8, 8, 1), np.nan))
    np.savez(d / "empty_x.npz", x=np.zeros((0, 8, 8, 1)))
    np.savez(d / "nox.npz", images=np.zeros((3, 8, 8, 1)))
    np.savez(d / "labels99.npz", x=np.zeros((4, 8, 8, 1)), y=np.array([0, 1, 2, 99]))
    np.savez(d / "labelsneg.npz", x=np.zeros((4, 8, 8, 1)), y=np.array([0, -1, 2, 3]))
    np.savez(d / "labelsfloat.npz", x=np.zeros((4, 8, 8, 1)), y=np.array([0.5, 1, 2, 3]))
    np.savez(d / "labelscount.npz", x=np.zeros((4, 8, 8, 1)), y=np.array([0, 1, 2]))
    np.save(d / "plain.npy", np.zeros((4, 8, 8, 1)))
    np.savez(d / "objects.npz", x=np.array([None, 1], dtype=object))
    (d / "junk.npz").write_text("not a zip archive")
    (d / "bad.yaml").write_text("name: [unclosed\n")
    (d / "schema.yaml").write_text("name: mychip\n")
    (d / "afile").write_text("a file, not a directory\n")
    (d / "emptydir").mkdir()
    (d / "out").mkdir()


def _make_bundles(d: Path):
    import h5py
    r = run("compile", "ok.keras", "-o", "good", "--calib", "calib.npz", "--mode", "rate", "--netx",
            "--steps", "8", cwd=d)
    assert r.returncode == 0, r.stderr
    good = d / "good"
    assert (good / "network.net").exists()

    def variant(name, **files):
        shutil.copytree(good, d / name)
        for f, content in files.items():
            (d / name / f.replace("__", ".")).write_bytes(content)
        return d / name

    lj, ln = (good / "lowered.json").read_bytes(), (good / "lowered.npz").read_bytes()
    variant("b_summary", summary__json=b"{not json")
    variant("b_foreign", summary__json=json.dumps({"tool": "something else", "version": 3}).encode())
    variant("b_json", lowered__json=lj[: len(lj) // 3])
    variant("b_npz", lowered__npz=ln[: len(ln) // 3])
    old = variant("b_json_old", lowered__json=lj[: len(lj) // 3])
    s = json.loads((old / "summary.json").read_text())
    s.pop("checksums")
    (old / "summary.json").write_text(json.dumps(s))
    # valid JSON, valid network, but not the one compiled here (a weight changed)
    net = json.loads(lj)
    net["meta"]["tampered"] = True
    variant("b_mixed", lowered__json=json.dumps(net).encode())
    variant("b_netx_garbage", network__net=os.urandom(600))
    for name in ("b_netx_foreign", "b_netx_foreign_checked"):
        b = variant(name)
        with h5py.File(b / "network.net", "w") as f:      # an HDF5 file, but not a NetX network
            f["weights"] = np.arange(10)
    s = json.loads((d / "b_netx_foreign" / "summary.json").read_text())
    s.pop("checksums")
    (d / "b_netx_foreign" / "summary.json").write_text(json.dumps(s))


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Build every bad input, run every case (4 at a time), return {id: (result, case)}."""
    d = tmp_path_factory.mktemp("corpus")
    _make_models(d)
    _make_data(d)
    _make_bundles(d)
    jobs = {}
    for cid, argv, words in COMPILE:
        args = ["compile", *argv]
        if "-o" not in argv:
            args += ["-o", f"out/{cid}"]
        if "--calib" not in argv:
            args += [] if "--no-calib" in argv else ["--calib", "calib.npz"]
        args = [a for a in args if a != "--no-calib"]
        jobs[cid] = (args, words)
    for cid, bundle, data, extra, words in SIMULATE:
        jobs[cid] = (["simulate", bundle, "--data", data, *extra], words)
    before = _tree(d / "good")
    afile = (d / "afile").read_bytes()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futs = {cid: pool.submit(run, *args, cwd=d) for cid, (args, _) in jobs.items()}
        results = {cid: (f.result(), jobs[cid][1]) for cid, f in futs.items()}
    # nothing was written anywhere by any case
    assert sorted(p.name for p in (d / "out").iterdir()) == []
    assert not [p for p in d.iterdir() if p.name.startswith(".")], list(d.iterdir())
    assert (d / "afile").read_bytes() == afile
    assert _tree(d / "good") == before
    assert not (d / "nodir").exists() and list((d / "emptydir").iterdir()) == []
    return results


@pytest.mark.parametrize("cid", [c[0] for c in COMPILE] + [c[0] for c in SIMULATE])
def test_bad_input_is_one_line_with_a_fix(corpus, cid):
    r, words = corpus[cid]
    assert r.returncode == 2, (cid, r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    msg = errors[0]
    for w in words:
        assert w.lower() in msg.lower(), (cid, w, msg)
    # "<problem>; <fix>": the fix follows a semicolon (click usage errors point at --help)
    assert ";" in msg, msg
    assert r.stdout.strip() == "", r.stdout
