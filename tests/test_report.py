"""The compile report and the build log, through the real CLI in subprocesses.

Two compiles of the same model and data (one ``--quiet``) must give
byte-identical bundles; the report's figures must exist, be non-trivial images
and be drawn from the real data: the accuracy-vs-steps curve in
``report.json`` must match the summary's calibration accuracy and what
``neurocomp simulate --steps T`` measures on the same samples, and the raster
must hold the spikes ``simulate --record`` records for the same sample."""
import base64
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

NEUROCOMP = [sys.executable, "-m", "neurocomp.cli"]
FIGURES = ("accuracy_vs_steps", "ann_vs_snn", "spike_rates", "raster", "core_utilisation")
NOISE = ("oneDNN", "absl", "I0000", "W0000", "tensorflow", "TensorFlow", "Warning", "WARNING", "warn(",
         "cuda", "lava.magma", "DeprecationWarning")


def run(*args, cwd=None):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(NEUROCOMP + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=400)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A trained digits CNN compiled twice (rate-soft, 20 steps) into b1 and b2 (--quiet)."""
    import keras
    from neurocomp.demo import digits_data
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("report")
    x_tr, x_te, y_tr, y_te = digits_data()
    m = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                          keras.layers.AveragePooling2D(2, name="pool"), keras.layers.Flatten(),
                          keras.layers.Dense(24, activation="relu", name="fc"),
                          keras.layers.Dense(10, name="logits")], name="report_cnn")
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x_tr, y_tr, epochs=15, verbose=0)
    m.save(d / "cnn.keras")
    np.savez(d / "calib.npz", x_train=x_tr[:300], y_train=y_tr[:300])
    # the samples the report simulates (the first 200), as a simulate data file
    np.savez(d / "report_samples.npz", x=x_tr[:200], y=y_tr[:200])
    # the pool stays a spiking layer (three spiking layers for the raster and figures)
    args = ["compile", d / "cnn.keras", "--calib", d / "calib.npz", "--mode", "rate-soft", "--steps", "20",
            "--no-avgpool-fold"]
    with ThreadPoolExecutor(2) as pool:
        f1 = pool.submit(run, *args, "-o", d / "b1")
        f2 = pool.submit(run, "--quiet", *args, "-o", d / "b2")
        r1, r2 = f1.result(), f2.result()
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    return d, r1, r2


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_inputs_give_byte_identical_bundles(built):
    d, _, _ = built
    a, b = _files(d / "b1"), _files(d / "b2")
    assert sorted(a) == sorted(b)
    for name in ("report.md", "report.html", "report.json", "summary.json", "lowered.npz", "mapping.json",
                 *(f"figures/{f}.png" for f in FIGURES)):
        assert name in a, name
    assert [k for k in a if a[k] != b[k]] == []


def test_build_log_names_and_times_every_pass_without_library_noise(built):
    d, r1, r2 = built
    err = r1.stderr
    for step in ("load model", "load calibration data", "[1/4] fold_batchnorm", "[2/4] fold_linear_layers",
                 "[3/4] balance_thresholds", "[4/4] lower", "partition onto cores", "report: simulate 200 samples x 20 steps",
                 "write bundle and report"):
        line = next((ln for ln in err.splitlines() if step in ln), None)
        assert line is not None, (step, err)
        assert re.search(r"\d+ ms|\d+\.\d\d s", line), line
    for word in NOISE:
        assert word not in err and word not in r1.stdout, (word, err)
    # --quiet: only the result line (and one-line notes about files not written)
    quiet = [ln for ln in r2.stderr.splitlines() if ln.strip()]
    wrote = [ln for ln in quiet if ln.startswith(f"wrote {d / 'b2'}/")]
    assert len(wrote) == 1 and "report.html" in wrote[0]
    assert all(ln.startswith(("wrote ", "network.net not written", "network.nir not written",
                              "warning: the SNN decides")) for ln in quiet), quiet
    assert r1.stdout == "" and r2.stdout == ""


def test_accuracy_curve_matches_summary_and_simulate(built):
    d, _, _ = built
    summary = json.loads((d / "b1" / "summary.json").read_text())
    rep = json.loads((d / "b1" / "report.json").read_text())
    cal, curve = summary["calibration"], rep["curve"]
    assert cal["samples"] == 200 and cal["steps"] == 20 == rep["steps"]
    assert curve["steps"] == list(range(1, 21)) and len(curve["snn"]) == 20
    assert curve["snn"][cal["steps"] - 1] == cal["snn"] == rep["accuracy"]["snn"]
    assert curve["ann"] == cal["ann"] and curve["qann"] == cal["qann"]
    L = summary["latency_steps"]
    assert curve["snn"][0] < 0.3 < curve["snn"][-1]       # silent before L, accurate after
    # agreement with the float ANN (no labels needed): the Keras model's decisions against simulate's
    import keras
    x = np.load(d / "report_samples.npz")["x"]
    ann = keras.models.load_model(d / "cnn.keras").predict(x, verbose=0).argmax(1)
    agreement = rep["agreement"]
    # each point is what an independent T-step simulation of the same samples measures
    for t in (L, L + 3, 20):
        r = run("simulate", d / "b1", "--data", d / "report_samples.npz", "--steps", t, "--json")
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        assert res["samples"] == 200 and res["steps"] == t
        assert res["accuracy"] == pytest.approx(curve["snn"][t - 1], abs=1e-12), t
        agree = float((np.array(res["predictions"]) == ann).mean())
        assert agreement["per_step"][t - 1] == pytest.approx(agree, abs=1e-12), t
    # the summary's spikes per sample is simulate's, too (at the full 20 steps)
    assert res["spikes_per_sample"] == pytest.approx(summary["spikes_per_sample"])
    assert summary["agreement"] == {k: v for k, v in agreement.items() if k != "per_step"}
    assert agreement["per_step"][-1] == agreement["snn"] and len(agreement["per_step"]) == 20
    assert agreement["samples"] == 200 and agreement["qann"] > 0.9


def test_agreement_warning_names_where_the_decisions_part():
    from neurocomp.report import AGREEMENT_WARN_BELOW, agreement_warning

    g = {"samples": 200, "steps": 20, "qann": 1.0, "snn": AGREEMENT_WARN_BELOW}
    assert agreement_warning(g) is None and agreement_warning(None) is None
    # 2 of 20 samples is 90 %, but too few to tell from noise; 3 of 30 are not
    assert agreement_warning(dict(g, samples=20, snn=0.9)) is None
    assert agreement_warning(dict(g, samples=30, snn=0.9)) is not None
    spiking = agreement_warning(dict(g, snn=0.9), mode="rate")
    assert spiking.startswith("warning: the SNN decides as the float ANN on 90.0% of 200 calibration samples "
                              "after 20 steps") and "loss is in spiking" in spiking
    assert "--steps" in spiking and "--mode sigma-delta" in spiking and "--mode rate-soft" in spiking
    assert "--mode sigma-delta" not in agreement_warning(dict(g, snn=0.9), mode="sigma-delta")
    quant = agreement_warning(dict(g, snn=0.945, qann=0.95), normalization="percentile")
    assert "loss is in quantisation;" in quant and "--normalization max" in quant and "spiking" not in quant
    assert "try --normalization percentile (" in agreement_warning(dict(g, snn=0.945, qann=0.95),
                                                                  normalization="max")
    both = agreement_warning(dict(g, snn=0.5, qann=0.95))
    assert "loss is in quantisation and in spiking" in both and "--percentile" in both and "--steps" in both
    assert all("\n" not in w for w in (spiking, quant, both))


def test_raster_holds_the_recorded_spikes_of_sample_zero(built, tmp_path):
    d, _, _ = built
    rep = json.loads((d / "b1" / "report.json").read_text())
    r = run("simulate", d / "b1", "--data", d / "report_samples.npz", "--limit", "1", "--json",
            "--record", tmp_path / "rec.npz")
    assert r.returncode == 0, r.stderr
    rec = np.load(tmp_path / "rec.npz")
    raster = rep["raster"]
    assert raster["sample"] == 0 and raster["prediction"] == json.loads(r.stdout)["predictions"][0]
    names = [lay["name"] for lay in raster["layers"]]
    assert names == ["conv", "pool", "fc"]           # logits integrates (membrane read-out)
    for lay in raster["layers"]:
        t, i = np.nonzero(rec[lay["name"]][0])
        assert lay["t"] == t.tolist() and lay["i"] == i.tolist(), lay["name"]
        assert len(lay["t"]) > 10
    # histogram: every neuron of a spiking layer counted once
    sizes = {row["name"]: row["neurons"] for row in rep["layers"]}
    for h in rep["rate_histograms"]:
        assert sum(h["counts"]) == sizes[h["name"]]


def test_figures_are_real_images(built):
    from matplotlib.image import imread
    d, _, _ = built
    rep = json.loads((d / "b1" / "report.json").read_text())
    shapes = {}
    for name in FIGURES:
        path = d / "b1" / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 15_000, (name, path.stat().st_size)
        img = imread(path)
        h, w = img.shape[:2]
        shapes[name] = (h, w)
        assert w >= 800 and h >= 300, (name, img.shape)
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 20, (name, len(colours))
        ink = (img[..., :3].mean(axis=2) < 0.9).mean()           # not a blank canvas
        assert 0.005 < ink < 0.9, (name, ink)
    # grids scale with the data: one panel per layer (4 scatter panels in one row, 3 histograms)
    assert len(rep["scatter"]) == 4 and len(rep["rate_histograms"]) == 3
    assert shapes["ann_vs_snn"][1] > shapes["spike_rates"][1]
    # the scatter points are the ANN and SNN values of real neurons
    for s in rep["scatter"]:
        a, v = np.array(s["ann"]), np.array(s["snn"])
        assert len(a) == len(v) > 100 and np.corrcoef(a, v)[0, 1] > 0.9
    # the utilisation figure's data is the mapping's
    mapping = json.loads((d / "b1" / "mapping.json").read_text())
    per_core = rep["cores"]["per_core"]
    assert len(per_core) == len(mapping["cores"])
    for c, m in zip(per_core, mapping["cores"]):
        assert (c["population"], c["neurons"], c["synapse_memory_bits"]) == \
            (m["population"], m["neurons"], m["synapse_memory_bits"])


def test_html_is_self_contained_and_markdown_links_the_figures(built):
    d, _, _ = built
    html = (d / "b1" / "report.html").read_text()
    md = (d / "b1" / "report.md").read_text()
    imgs = re.findall(r'<img alt="[^"]*" title="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert sorted(t for t, _ in imgs) == sorted(f"figures/{f}.png" for f in FIGURES)
    for title, b64 in imgs:
        assert base64.b64decode(b64) == (d / "b1" / title).read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', html)            # nothing external
    for f in FIGURES:
        assert f"](figures/{f}.png)" in md
    for word in ("quant. error", "r(ANN, SNN)", "| conv | lif |", "Cost estimate", "energy per inference",
                 "Cores (", "Accuracy (200 labelled calibration samples, 20 steps)",
                 "Agreement with the float ANN (200 calibration samples, 20 steps)"):
        assert word in md, word
    rep = json.loads((d / "b1" / "report.json").read_text())
    conv = next(r for r in rep["layers"] if r["name"] == "conv")
    assert 0 <= conv["quant_error"] < 0.1 and conv["r_ann_snn"] > 0.9 and conv["vth"] > 0
    assert rep["costs"]["total"]["synaptic_ops"] > 0 and rep["costs"]["total"]["energy_pj"] > 0


def test_simulate_progress_goes_to_stderr(built):
    d, _, _ = built
    r = run("simulate", d / "b1", "--data", d / "report_samples.npz", "--limit", "30", "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)                                            # stdout: only the JSON
    assert re.search(r"simulate 30 samples x 20 steps on event\s+\d+(\.\d\d)? m?s", r.stderr), r.stderr
    r = run("--quiet", "simulate", d / "b1", "--data", d / "report_samples.npz", "--limit", "30", "--json")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_python_api_object_saves_and_reports(zoo, digits, tmp_path):
    """``compile()`` returns an object that can simulate, export and report."""
    import neurocomp
    from neurocomp.bundle import load_bundle
    x_tr, y_tr, x_te, y_te = digits
    model, _ = zoo("mlp_digits")
    c = neurocomp.compile(model, calib=x_tr[:200], mode="rate-soft")
    summary = c.save(tmp_path / "b", x_tr[:60], y_tr[:60])
    b = load_bundle(tmp_path / "b")
    assert b.summary["mode"] == "rate-soft" and summary["latency_steps"] == c.latency_steps
    data = c.report(x_te[:40], y_te[:40], steps=c.latency_steps + 8, n=40)
    assert len(data["curve"]["snn"]) == c.latency_steps + 8 and len(data["layers"]) >= 2
