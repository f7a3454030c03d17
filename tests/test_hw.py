"""Hardware configuration layer: packaged YAMLs, schema, loader errors,
lookups and the synapse-memory cost model (fast, no network)."""

from __future__ import annotations

import copy
import importlib.resources
import math
import re
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml

from neurocomp.errors import HardwareLimitError, HwConfigError, NeurocompError
from neurocomp.hw import ENCODINGS, HardwareConfig, Quantity, list_hw, load_hw

PACKAGED = ["loihi1", "loihi2", "tiny"]
LEAF_KEYS = {"value", "unit", "source", "confirmed"}
META_KEYS = {"name", "description", "generation"}


def raw(name: str) -> dict:
    text = importlib.resources.files("neurocomp.hw_configs").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def write(tmp_path: Path, data, name: str = "chip.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def raw_leaves(d: dict, prefix: str = ""):
    """(dotted path, leaf dict) for every {value, unit, ...} mapping in raw YAML."""
    for key, item in d.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and "value" in item:
            yield path, item
        elif isinstance(item, dict):
            yield from raw_leaves(item, path + ".")


def expect_error(arg, *needles: str) -> str:
    with pytest.raises(HwConfigError) as info:
        load_hw(arg)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# -- packaged configs ------------------------------------------------------

def test_list_hw_is_sorted_and_complete():
    names = list_hw()
    assert names == sorted(names)
    assert set(PACKAGED) <= set(names)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_config_loads(name):
    hw = load_hw(name)
    assert isinstance(hw, HardwareConfig)
    assert hw.name == name
    assert hw.generation == {"loihi1": 1, "loihi2": 2, "tiny": 0}[name]
    for enc in ENCODINGS:
        assert hw.has(f"synapse_encodings.{enc}.word_bits")


@pytest.mark.parametrize("name", PACKAGED)
def test_every_leaf_has_unit_and_source(name):
    hw = load_hw(name)
    rows = list(hw.rows())
    assert rows
    for path, value, unit, confirmed, source in rows:
        assert isinstance(unit, str) and unit.strip(), path
        assert isinstance(source, str) and source.strip(), path
        assert isinstance(confirmed, bool), path
        assert hw.value(path) == value


@pytest.mark.parametrize("name", PACKAGED)
def test_no_bare_numbers_in_yaml(name):
    data = raw(name)

    def walk(d, prefix=""):
        for key, item in d.items():
            path = f"{prefix}{key}"
            if isinstance(item, dict) and "value" in item:
                assert set(item) == LEAF_KEYS, path
            elif isinstance(item, dict):
                walk(item, path + ".")
            else:
                assert path in META_KEYS, f"bare value at {path}"

    walk(data)
    # rows() reports exactly the leaves of the file, in file order
    assert [p for p, *_ in load_hw(name).rows()] == [p for p, _ in raw_leaves(data)]


def test_tiny_chip_is_8_by_64_and_invented():
    hw = load_hw("tiny")
    assert hw.value("chip.cores") == 8
    assert hw.value("core.neurons") == 64
    assert hw.value("core.input_axons") == 256
    assert hw.value("core.output_axons") == 256
    assert hw.value("core.synapse_memory_bits") == 16 * 1024
    assert hw.value("chip.system.max_chips") == 2
    assert all(not confirmed for _, _, _, confirmed, _ in hw.rows())
    assert all(src.startswith("test chip") for *_, src in hw.rows())


def test_loihi1_limits():
    hw = load_hw("loihi1")
    assert hw.value("core.neurons") == 1024
    assert hw.value("core.input_axons") == 4096
    assert hw.value("core.output_axons") == 4096
    assert hw.value("core.synapse_memory_bits") == 16384 * 64
    assert hw.value("chip.cores") == 128
    assert hw.value("chip.mesh") == (8, 16)
    n = hw.numerics
    assert (n.weight_mantissa_bits.value, n.threshold_mantissa_bits.value) == (8, 17)
    assert (n.threshold_exp.value, n.bias_mantissa_bits.value) == (6, 13)
    assert (n.bias_exp_min.value, n.bias_exp_max.value) == (0, 7)
    assert (n.weight_exp_min.value, n.weight_exp_max.value) == (-8, 7)
    assert (n.decay_bits.value, n.state_bits.value, n.accumulator_bits.value) == (12, 24, 21)
    assert n.graded_spike_bits.value == 0 and n.supports_graded_spikes.value is False
    assert n.supports_custom_neurons.value is False
    # spec §5.2 marks the energy/timing figures [U]
    assert all(not q for p, _, _, q, _ in hw.rows() if p.startswith(("energy.", "timing.")))
    assert hw.quantity("numerics.max_synaptic_delay").confirmed is False


def test_loihi2_features():
    hw = load_hw("loihi2")
    assert hw.value("numerics.graded_spike_bits") == 24
    assert hw.value("numerics.supports_graded_spikes") is True
    assert hw.value("numerics.supports_custom_neurons") is True
    assert hw.value("numerics.max_synaptic_delay") == 63
    assert hw.value("core.neurons") == 8192
    assert hw.quantity("core.neurons").confirmed is False  # spec §5.3 [U]
    assert hw.quantity("energy.spike_inter_chip_pj").confirmed is False


@pytest.mark.parametrize("name", PACKAGED)
def test_json_schema_accepts_packaged_yaml(name):
    schema = HardwareConfig.json_schema()
    jsonschema.validate(raw(name), schema)
    bad = raw(name)
    bad["core"]["nurons"] = bad["core"].pop("neurons")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# -- immutability and caching ----------------------------------------------

def test_packaged_loads_are_cached_and_frozen():
    hw = load_hw("loihi1")
    assert load_hw("loihi1") is hw
    with pytest.raises(pydantic.ValidationError):
        hw.core.neurons = hw.core.input_axons
    with pytest.raises(pydantic.ValidationError):
        hw.core.neurons.value = 1
    assert isinstance(hw.value("chip.mesh"), tuple)
    assert load_hw("loihi1").value("core.neurons") == 1024


# -- loading from a path ---------------------------------------------------

def test_load_from_explicit_path(tmp_path):
    data = raw("tiny")
    data["name"] = "my_chip"
    data["core"]["neurons"]["value"] = 32
    p = write(tmp_path, data, "my_chip.yml")
    for arg in (p, str(p)):
        hw = load_hw(arg)
        assert hw.name == "my_chip"
        assert hw.value("core.neurons") == 32
    # packaged file through its path works too
    packaged = importlib.resources.files("neurocomp.hw_configs").joinpath("loihi2.yaml")
    assert load_hw(str(packaged)).value("core.neurons") == 8192


def test_rows_follow_file_order(tmp_path):
    data = raw("tiny")
    data["core"] = dict(reversed(list(data["core"].items())))
    hw = load_hw(write(tmp_path, data))
    paths = [p for p, *_ in hw.rows()]
    assert paths[:4] == [
        "core.synapse_memory_bits", "core.output_axons", "core.input_axons", "core.neurons",
    ]


# -- loader errors -----------------------------------------------------------

def test_unknown_name():
    msg = expect_error("loihi3", "unknown hardware config 'loihi3'", "loihi1", "loihi2", "tiny")
    assert ".yaml" in msg and "path" in msg


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.yaml", "not found", "nope.yaml")


def test_yaml_syntax_error_reports_line(tmp_path):
    raw_text = importlib.resources.files("neurocomp.hw_configs").joinpath("tiny.yaml").read_text()
    lines = raw_text.splitlines()
    idx = next(i for i, line in enumerate(lines) if line.startswith("  input_axons:"))
    lines[idx] = "  input_axons: [value: 1"
    text = "\n".join(lines) + "\n"
    msg = expect_error(write(tmp_path, text), "YAML syntax error", "line ")
    reported = [int(m) for m in re.findall(r"line (\d+)", msg)]
    assert any(abs(r - (idx + 1)) <= 2 for r in reported), msg


def test_duplicate_key_is_an_error(tmp_path):
    text = importlib.resources.files("neurocomp.hw_configs").joinpath("tiny.yaml").read_text()
    text += "\ngeneration: 1\n"
    expect_error(write(tmp_path, text), "duplicate key 'generation'", "line ")


def test_unknown_key(tmp_path):
    data = raw("tiny")
    data["core"]["nurons"] = data["core"].pop("neurons")
    expect_error(write(tmp_path, data), "unknown key 'core.nurons'", "did you mean 'neurons'")


def test_unknown_key_in_leaf(tmp_path):
    data = raw("tiny")
    data["core"]["neurons"]["units"] = "x"
    expect_error(write(tmp_path, data), "unknown key 'core.neurons.units'")


def test_missing_required_section(tmp_path):
    data = raw("tiny")
    del data["energy"]
    expect_error(write(tmp_path, data), "missing required section 'energy'")


def test_missing_leaf_source(tmp_path):
    data = raw("tiny")
    del data["core"]["neurons"]["source"]
    expect_error(write(tmp_path, data), "core.neurons.source")


def test_negative_neuron_count(tmp_path):
    data = raw("tiny")
    data["core"]["neurons"]["value"] = -64
    expect_error(write(tmp_path, data), "core.neurons.value", "greater than 0", "-64")


def test_float_where_integer_expected(tmp_path):
    data = raw("tiny")
    data["core"]["input_axons"]["value"] = 256.5
    expect_error(write(tmp_path, data), "core.input_axons.value", "integer")


def test_bare_number_leaf(tmp_path):
    data = raw("tiny")
    data["core"]["neurons"] = 64
    expect_error(write(tmp_path, data), "'core.neurons'", "value, unit, source, confirmed")


def test_not_a_mapping(tmp_path):
    expect_error(write(tmp_path, "- 1\n- 2\n"), "mapping")
    expect_error(write(tmp_path, ""), "empty")


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["numerics"]["weight_exp_min"].update(value=9), "weight_exp_min"),
        (lambda d: d["numerics"]["graded_spike_bits"].update(value=0), "graded"),
        (lambda d: d["chip"]["mesh"].update(value=[3, 3]), "mesh"),
        (lambda d: d.update(generation=7), "generation"),
        (lambda d: d["energy"]["synop_pj"].update(value=0), "energy.synop_pj.value"),
        (lambda d: d["core"]["neurons"].update(confirmed="yes"), "core.neurons.confirmed"),
    ],
)
def test_semantic_errors(tmp_path, mutate, needle):
    data = raw("tiny")
    mutate(data)
    expect_error(write(tmp_path, data), needle)


def test_hwconfigerror_is_a_neurocomp_error():
    assert issubclass(HwConfigError, NeurocompError)


# -- lookups -----------------------------------------------------------------

def test_value_quantity_has():
    hw = load_hw("loihi2")
    q = hw.quantity("core.neurons")
    assert isinstance(q, Quantity) and q.value == hw.value("core.neurons") == 8192
    assert isinstance(hw.value("core.neurons"), int)
    assert isinstance(hw.value("energy.synop_pj"), float)
    assert hw.value("name") == "loihi2"
    assert hw.has("energy.synaptic_update_pj")
    assert not load_hw("tiny").has("energy.synaptic_update_pj")
    assert not hw.has("core.nope")


@pytest.mark.parametrize("path", ["core.nurons", "core", "nope", "core.neurons.value", ""])
def test_value_on_bad_path_raises(path):
    hw = load_hw("loihi1")
    with pytest.raises(HwConfigError) as info:
        hw.value(path) if path != "core.neurons.value" else hw.quantity(path)
    assert "\n" not in str(info.value)
    if path == "core.nurons":
        assert "core.neurons" in str(info.value)


def test_value_on_unset_optional_raises():
    with pytest.raises(HwConfigError, match="not set"):
        load_hw("tiny").value("energy.synaptic_update_pj")


# -- synapse memory cost -------------------------------------------------------

def nengo_bits_per_axon(n, weight_bits, delay_bits, idx_bits, header=10, block=64, word=64):
    """Independent transcription of nengo-loihi SynapseConfig.bits_per_axon."""
    per = weight_bits + delay_bits + idx_bits
    bits = 0
    for i in range(0, n, block):
        m = min(n - i, block)
        bits += word * math.ceil((m * per + header) / word)
    return bits


def test_synapse_memory_hand_computed():
    hw = load_hw("loihi1")
    # 100 synapses per row -> blocks of 64 and 36:
    #   64*8+10 = 522 -> 576 bits;  36*8+10 = 298 -> 320 bits;  896 per row
    assert hw.synapse_memory_bits("dense", 100, 100) == 100 * 896 == 89600
    # with 6 delay bits: 64*14+10 = 906 -> 960; 36*14+10 = 514 -> 576
    assert hw.synapse_memory_bits("dense", 100, 100, 8, 6) == 100 * 1536
    # sparse adds 10 index bits: 64*18+10 = 1162 -> 1216; 36*18+10 = 658 -> 704
    assert hw.synapse_memory_bits("sparse", 1, 100) == 1920
    assert hw.synapse_memory_bits("dense", 10, 0) == 0
    assert hw.synapse_memory_bits("dense", 0, 100) == 0


@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 127, 128, 129, 1000])
@pytest.mark.parametrize("wb,db", [(8, 0), (4, 0), (8, 6), (1, 3)])
def test_synapse_memory_matches_nengo_formula(n, wb, db):
    hw = load_hw("loihi1")
    assert hw.synapse_memory_bits("dense", 3, n, wb, db) == 3 * nengo_bits_per_axon(n, wb, db, 0)
    assert hw.synapse_memory_bits("sparse", 3, n, wb, db) == 3 * nengo_bits_per_axon(n, wb, db, 10)


@pytest.mark.parametrize("name", PACKAGED)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_synapse_memory_is_monotone(name, encoding):
    hw = load_hw(name)
    prev = -1
    for n in range(0, 300):
        bits = hw.synapse_memory_bits(encoding, 5, n)
        assert bits >= prev
        prev = bits
    assert hw.synapse_memory_bits(encoding, 6, 50) >= hw.synapse_memory_bits(encoding, 5, 50)
    assert hw.synapse_memory_bits(encoding, 5, 50, 8, 6) >= hw.synapse_memory_bits(encoding, 5, 50)


def test_weight_bits_round_up_to_stored_widths():
    l1, l2 = load_hw("loihi1"), load_hw("loihi2")
    # Loihi 1 stores 7-bit weights in 8 bits
    assert l1.synapse_memory_bits("dense", 4, 100, 7) == l1.synapse_memory_bits("dense", 4, 100, 8)
    assert l2.synapse_memory_bits("dense", 4, 100, 7) < l2.synapse_memory_bits("dense", 4, 100, 8)


def test_conv_shared_stores_kernel_once():
    hw = load_hw("loihi2")
    shared = hw.synapse_memory_bits("conv_shared", 1024, 72, shared_rows=8)
    unshared = hw.synapse_memory_bits("conv_shared", 1024, 72)
    assert shared < unshared
    enc = hw.synapse_encodings.conv_shared
    per_row = nengo_bits_per_axon(72, 8, 0, enc.index_bits.value)
    assert shared == 8 * per_row + 1024 * enc.per_axon_overhead_bits.value
    # dense ignores shared_rows (no weight sharing)
    assert hw.synapse_memory_bits("dense", 10, 72, shared_rows=1) == hw.synapse_memory_bits(
        "dense", 10, 72)


def test_synapse_memory_bad_arguments():
    hw = load_hw("loihi1")
    with pytest.raises(HwConfigError, match="dense"):
        hw.synapse_memory_bits("csr", 1, 1)
    with pytest.raises(HardwareLimitError):
        hw.synapse_memory_bits("dense", 1, 1, weight_bits=9)
    with pytest.raises(HardwareLimitError):
        hw.synapse_memory_bits("dense", 1, 1, delay_bits=7)
    with pytest.raises(ValueError):
        hw.synapse_memory_bits("dense", -1, 1)
    with pytest.raises(ValueError):
        hw.synapse_memory_bits("dense", 1, 2.5)
    with pytest.raises(ValueError):
        hw.synapse_memory_bits("conv_shared", 4, 9, shared_rows=5)


def test_loader_does_not_mutate_input(tmp_path):
    data = raw("tiny")
    before = copy.deepcopy(data)
    load_hw(write(tmp_path, data))
    assert data == before


@pytest.mark.parametrize("name", PACKAGED)
def test_round_trip_equality(name):
    hw = load_hw(name)
    again = HardwareConfig.model_validate_json(hw.model_dump_json())
    assert again == hw and hash(again) == hash(hw)
    assert [r[0] for r in again.rows()] == [r[0] for r in hw.rows()]
