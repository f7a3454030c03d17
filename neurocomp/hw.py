"""Hardware configurations: the limits, number formats and cost models of a
target chip, loaded from a YAML file and validated against a strict schema.

Every hardware fact in a config is a :class:`Quantity` leaf
``{value, unit, source, confirmed}`` so that each number carries where it came
from and whether it was confirmed from a primary source.  Packaged configs
live in ``neurocomp.hw_configs`` (``hw_configs/*.yaml`` in the source tree).

Public API::

    load_hw("loihi2")                  -> HardwareConfig   (packaged, cached)
    load_hw("path/to/chip.yaml")       -> HardwareConfig   (explicit file)
    list_hw()                          -> ["loihi1", "loihi2", "tiny"]
    hw.value("core.neurons")           -> 8192
    hw.quantity("core.neurons")        -> Quantity(value=8192, unit=..., ...)
    hw.has("energy.synaptic_update_pj")-> bool (optional leaves may be absent)
    hw.rows()                          -> iterator of (path, value, unit, confirmed, source)
    hw.synapse_memory_bits("dense", n_axon_rows, synapses_per_row, weight_bits, delay_bits)
    HardwareConfig.json_schema()       -> dict

Every loader failure raises :class:`neurocomp.errors.HwConfigError` with a
one-line message that names the problem and the fix.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from neurocomp.errors import HardwareLimitError, HwConfigError

__all__ = [
    "HwConfigError",
    "Quantity",
    "CoreSection",
    "SystemSection",
    "ChipSection",
    "NumericsSection",
    "SynapseEncoding",
    "SynapseEncodingsSection",
    "EnergySection",
    "TimingSection",
    "HardwareConfig",
    "load_hw",
    "list_hw",
    "ENCODINGS",
]

_PACKAGE = "neurocomp.hw_configs"
_SUFFIXES = (".yaml", ".yml")

#: Names of the synapse encodings every config must define.
ENCODINGS = ("dense", "sparse", "conv_shared")


# ---------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------

_NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]


class Quantity(BaseModel):
    """One hardware fact: ``value`` with its ``unit``, ``source`` and whether
    the value was ``confirmed`` from a primary source (``False`` for values the
    spec marks [U] or that were derived / assumed; ``source`` says why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Union[StrictBool, StrictInt, StrictFloat, tuple[Union[StrictInt, StrictFloat], ...]]
    unit: _NonEmptyStr
    source: _NonEmptyStr
    confirmed: StrictBool


# Typed leaves: the same four keys, with a constrained ``value``.  Lists are
# stored as tuples so that cached configs cannot be mutated through them.

class PosInt(Quantity):
    """Integer > 0 (sizes, counts, bit widths that cannot be zero)."""

    value: Annotated[StrictInt, Field(gt=0)]


class NonNegInt(Quantity):
    """Integer >= 0."""

    value: Annotated[StrictInt, Field(ge=0)]


class SignedInt(Quantity):
    """Any integer (exponents)."""

    value: StrictInt


class PosNumber(Quantity):
    """Finite number > 0 (energies, times); stored as float."""

    value: Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]


class Flag(Quantity):
    """Boolean capability."""

    value: StrictBool


class PosIntList(Quantity):
    """Non-empty list of integers > 0 (e.g. a mesh shape)."""

    value: Annotated[tuple[Annotated[StrictInt, Field(gt=0)], ...], Field(min_length=1)]


class NonNegIntList(Quantity):
    """Non-empty list of integers >= 0 (e.g. the allowed weight widths)."""

    value: Annotated[tuple[Annotated[StrictInt, Field(ge=0)], ...], Field(min_length=1)]


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------

class _Section(BaseModel):
    """Base of every section: unknown keys are errors, instances are frozen,
    and the key order of the source mapping is remembered for ``rows()``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _key_order: Optional[tuple[str, ...]] = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_key_order(cls, data: Any, handler: Any) -> Any:
        obj = handler(data)
        if isinstance(data, dict) and isinstance(obj, _Section):
            obj._key_order = tuple(str(k) for k in data)
        return obj

    # Equality and hashing look at field values only: the remembered key order
    # is presentation, and two configs with the same content are equal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.__dict__.values())))

    def _ordered_fields(self) -> list[str]:
        declared = list(type(self).model_fields)
        if self._key_order is None:
            return declared
        first = [k for k in self._key_order if k in type(self).model_fields]
        return first + [k for k in declared if k not in first]


class CoreSection(_Section):
    """Per neuro-core limits."""

    neurons: PosInt
    input_axons: PosInt
    output_axons: PosInt
    synapse_memory_bits: PosInt
    max_fan_in: Optional[PosInt] = None


class SystemSection(_Section):
    """Multi-chip system limits."""

    max_chips: PosInt


class ChipSection(_Section):
    """Per chip."""

    cores: PosInt
    mesh: Optional[PosIntList] = None
    system: SystemSection

    @model_validator(mode="after")
    def _mesh_matches_cores(self) -> "ChipSection":
        if self.mesh is not None:
            prod = 1
            for d in self.mesh.value:
                prod *= d
            if prod != self.cores.value:
                raise ValueError(
                    f"mesh {list(self.mesh.value)} holds {prod} cores but cores is "
                    f"{self.cores.value}; make them agree"
                )
        return self


class NumericsSection(_Section):
    """Number formats and arithmetic widths."""

    weight_mantissa_bits: PosInt
    weight_bits_allowed: Optional[NonNegIntList] = None
    weight_exp_min: SignedInt
    weight_exp_max: SignedInt
    threshold_mantissa_bits: PosInt
    threshold_exp: NonNegInt
    bias_mantissa_bits: PosInt
    bias_exp_min: SignedInt
    bias_exp_max: SignedInt
    decay_bits: PosInt
    state_bits: PosInt
    accumulator_bits: PosInt
    max_synaptic_delay: NonNegInt
    graded_spike_bits: NonNegInt
    supports_graded_spikes: Flag
    supports_custom_neurons: Flag

    @model_validator(mode="after")
    def _consistent(self) -> "NumericsSection":
        for lo, hi in (("weight_exp_min", "weight_exp_max"), ("bias_exp_min", "bias_exp_max")):
            a, b = getattr(self, lo).value, getattr(self, hi).value
            if a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b}); swap or fix them")
        graded = self.graded_spike_bits.value > 0
        if graded != self.supports_graded_spikes.value:
            raise ValueError(
                f"supports_graded_spikes is {self.supports_graded_spikes.value} but "
                f"graded_spike_bits is {self.graded_spike_bits.value}; use 0 bits exactly "
                "when graded spikes are unsupported"
            )
        if self.weight_bits_allowed is not None:
            bad = [b for b in self.weight_bits_allowed.value if b > self.weight_mantissa_bits.value]
            if bad:
                raise ValueError(
                    f"weight_bits_allowed has {bad} above weight_mantissa_bits "
                    f"({self.weight_mantissa_bits.value}); remove them"
                )
        return self


class SynapseEncoding(_Section):
    """Cost model of one synapse encoding (see ``synapse_memory_bits``).

    Cost of one stored axon row with ``n`` synapses: the row is split into
    blocks of at most ``max_synapses_per_block`` synapses; each block costs
    ``m * (weight_bits + delay_bits + bits_per_synapse_base + index_bits)
    + row_header_bits`` rounded up to a multiple of ``word_bits``.  Every input
    axon additionally costs ``per_axon_overhead_bits``.  With
    ``shares_weights`` only the distinct rows (``shared_rows``) are stored.
    """

    bits_per_synapse_base: NonNegInt
    index_bits: NonNegInt
    row_header_bits: NonNegInt
    max_synapses_per_block: PosInt
    word_bits: PosInt
    per_axon_overhead_bits: NonNegInt
    shares_weights: Flag
    # > 0: rows are reached through population axons -- one input axon per source pixel,
    # the channel riding as the spike's atom -- each taking this many output-axon slots
    # on the sending core per destination core (absent or 0: one axon per source neuron)
    population_axon_slots: Optional[NonNegInt] = None


class SynapseEncodingsSection(_Section):
    dense: SynapseEncoding
    sparse: SynapseEncoding
    conv_shared: SynapseEncoding


class EnergySection(_Section):
    """Energy per operation."""

    synop_pj: PosNumber
    synaptic_update_pj: Optional[PosNumber] = None
    neuron_update_pj: PosNumber
    neuron_update_inactive_pj: Optional[PosNumber] = None
    spike_intra_chip_pj: PosNumber
    spike_hop_pj: Optional[PosNumber] = None
    spike_inter_chip_pj: PosNumber


class TimingSection(_Section):
    """Time per operation."""

    synop_ns: PosNumber
    neuron_update_ns: PosNumber
    timestep_overhead_ns: PosNumber
    spike_intra_chip_ns: Optional[PosNumber] = None
    spike_inter_chip_ns: PosNumber


class HardwareConfig(_Section):
    """A validated, immutable hardware configuration."""

    name: _NonEmptyStr
    description: StrictStr
    generation: Literal[0, 1, 2]
    core: CoreSection
    chip: ChipSection
    numerics: NumericsSection
    synapse_encodings: SynapseEncodingsSection
    energy: EnergySection
    timing: TimingSection

    # -- schema ------------------------------------------------------------
    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of a config file (pydantic's ``model_json_schema``)."""
        return cls.model_json_schema()

    # -- lookup ------------------------------------------------------------
    def _resolve(self, path: str) -> Any:
        if not isinstance(path, str) or not path:
            raise HwConfigError(
                f"invalid hardware config path {path!r}; use a dotted path such as 'core.neurons'"
            )
        node: Any = self
        walked: list[str] = []
        for part in path.split("."):
            fields = type(node).model_fields if isinstance(node, _Section) else {}
            if part not in fields:
                hint = difflib.get_close_matches(path, self._all_paths(), n=1)
                did = f"did you mean '{hint[0]}'? " if hint else ""
                raise HwConfigError(
                    f"unknown hardware config path '{path}' in '{self.name}'; {did}"
                    f"run `neurocomp hw show {self.name}` to list the valid paths"
                )
            node = getattr(node, part)
            walked.append(part)
            if node is None:
                raise HwConfigError(
                    f"'{path}' is not set in hardware config '{self.name}'; add it to the "
                    "YAML or check hw.has(path) before reading it"
                )
        return node

    def _all_paths(self) -> list[str]:
        return [row[0] for row in self.rows()] + ["name", "description", "generation"]

    def has(self, path: str) -> bool:
        """True if ``path`` names a leaf that is set in this config."""
        try:
            self._resolve(path)
        except HwConfigError:
            return False
        return True

    def quantity(self, path: str) -> Quantity:
        """The :class:`Quantity` leaf at a dotted path, e.g. ``'core.neurons'``."""
        node = self._resolve(path)
        if not isinstance(node, Quantity):
            raise HwConfigError(self._not_a_leaf(path, node))
        return node

    def population_axon_slots(self) -> int:
        """Output-axon slots one conv population axon takes on its sending core
        (``synapse_encodings.conv_shared.population_axon_slots``); 0 where
        ``conv_shared`` rows are reached through one axon per source neuron."""
        q = self.synapse_encodings.conv_shared.population_axon_slots
        return 0 if q is None else int(q.value)

    def value(self, path: str) -> Any:
        """The value at a dotted path (``'core.neurons'`` -> 1024).  Also
        accepts the metadata keys ``name``, ``description``, ``generation``."""
        node = self._resolve(path)
        if isinstance(node, Quantity):
            return node.value
        if isinstance(node, _Section):
            raise HwConfigError(self._not_a_leaf(path, node))
        return node

    def _not_a_leaf(self, path: str, node: Any) -> str:
        if isinstance(node, _Section):
            kids = ", ".join(
                f"{path}.{k}" for k in node._ordered_fields() if getattr(node, k) is not None
            )
            return f"'{path}' is a section, not a quantity, in '{self.name}'; ask for one of {kids}"
        return f"'{path}' is not a quantity in '{self.name}'; use hw.value('{path}') instead"

    def rows(self) -> Iterator[tuple[str, Any, str, bool, str]]:
        """Yield ``(dotted_path, value, unit, confirmed, source)`` for every
        quantity leaf, in file order (declaration order for unset keys)."""

        def walk(section: _Section, prefix: str) -> Iterator[tuple[str, Any, str, bool, str]]:
            for key in section._ordered_fields():
                item = getattr(section, key)
                path = f"{prefix}{key}"
                if isinstance(item, Quantity):
                    yield (path, item.value, item.unit, item.confirmed, item.source)
                elif isinstance(item, _Section):
                    yield from walk(item, path + ".")

        yield from walk(self, "")

    # -- cost model ----------------------------------------------------------
    def synapse_memory_bits(
        self,
        encoding: str,
        n_axon_rows: int,
        synapses_per_row: int,
        weight_bits: int = 8,
        delay_bits: int = 0,
        *,
        shared_rows: Optional[int] = None,
        index_bits: Optional[int] = None,
    ) -> int:
        """Synapse-memory bits used on one core by ``n_axon_rows`` input axons
        that each fan out to ``synapses_per_row`` synapses.

        ``encoding``: ``'dense'``, ``'sparse'`` or ``'conv_shared'``.
        ``weight_bits``: stored weight width; rounded up to the next width in
        ``numerics.weight_bits_allowed`` when that list is given.
        ``delay_bits``: per-synapse delay width (0 when no delays are used).
        ``shared_rows``: for encodings with ``shares_weights`` (conv_shared),
        the number of distinct weight rows actually stored (e.g. one per input
        channel for a stride-1 convolution); default ``n_axon_rows`` (no
        sharing).  Ignored by encodings that do not share weights.
        ``index_bits``: override the encoding's per-synapse index width.

        Raises ``HwConfigError`` for an unknown encoding, ``HardwareLimitError``
        when ``weight_bits``/``delay_bits`` exceed what the chip stores, and
        ``ValueError`` for negative or non-integer counts.
        """
        if encoding not in ENCODINGS:
            raise HwConfigError(
                f"unknown synapse encoding '{encoding}'; use one of {', '.join(ENCODINGS)}"
            )
        enc: SynapseEncoding = getattr(self.synapse_encodings, encoding)
        for label, v in (
            ("n_axon_rows", n_axon_rows),
            ("synapses_per_row", synapses_per_row),
            ("weight_bits", weight_bits),
            ("delay_bits", delay_bits),
        ):
            _check_count(label, v)
        if shared_rows is not None:
            _check_count("shared_rows", shared_rows)
            if shared_rows > n_axon_rows:
                raise ValueError(
                    f"shared_rows ({shared_rows}) cannot exceed n_axon_rows ({n_axon_rows})"
                )
        if index_bits is not None:
            _check_count("index_bits", index_bits)

        num = self.numerics
        wmax = num.weight_mantissa_bits.value
        if weight_bits > wmax:
            raise HardwareLimitError(
                f"{weight_bits}-bit weights exceed the {wmax}-bit weight mantissa of "
                f"'{self.name}'; quantise weights to at most {wmax} bits"
            )
        if num.weight_bits_allowed is not None:
            weight_bits = min(b for b in num.weight_bits_allowed.value if b >= weight_bits)
        dmax = int(num.max_synaptic_delay.value).bit_length()
        if delay_bits > dmax:
            raise HardwareLimitError(
                f"{delay_bits} delay bits exceed the {dmax} bits needed for the maximum "
                f"synaptic delay of '{self.name}' ({num.max_synaptic_delay.value} steps); "
                "use fewer delay bits"
            )

        idx = enc.index_bits.value if index_bits is None else index_bits
        per_syn = weight_bits + delay_bits + enc.bits_per_synapse_base.value + idx
        header = enc.row_header_bits.value
        block = enc.max_synapses_per_block.value
        word = enc.word_bits.value

        full, rest = divmod(synapses_per_row, block)
        row_bits = full * _round_up(block * per_syn + header, word)
        if rest:
            row_bits += _round_up(rest * per_syn + header, word)

        stored_rows = n_axon_rows
        if enc.shares_weights.value and shared_rows is not None:
            stored_rows = shared_rows
        return stored_rows * row_bits + n_axon_rows * enc.per_axon_overhead_bits.value


def _round_up(bits: int, word: int) -> int:
    return -word * (-bits // word)


def _check_count(label: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{label} must be an int, got {type(v).__name__} {v!r}")
    if v < 0:
        raise ValueError(f"{label} must be >= 0, got {v}")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps
    the last one, which would hide a copy-paste error in a config)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            dup = key in seen
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if dup:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def list_hw() -> list[str]:
    """Sorted names of the packaged hardware configs."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(
        p.name[: -len(".yaml")]
        for p in root.iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith(("_", "."))
    )


def _is_path(arg: Union[str, os.PathLike]) -> bool:
    if isinstance(arg, os.PathLike):
        return True
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return arg.lower().endswith(_SUFFIXES) or any(s in arg for s in seps)


def load_hw(name_or_path: Union[str, os.PathLike]) -> HardwareConfig:
    """Load a hardware config by packaged name (``'loihi2'``) or from a YAML
    file (any argument ending in .yaml/.yml or containing a path separator).

    Packaged configs are cached; the returned models are frozen (lists are
    tuples), so callers cannot corrupt the cache.  Raises ``HwConfigError``.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise HwConfigError(
            f"hardware config must be a name or a path, not {type(name_or_path).__name__}; "
            f"use one of {', '.join(list_hw())} or a path to a .yaml file"
        )
    if _is_path(name_or_path):
        path = Path(name_or_path)
        return _parse_and_validate(_read_file(path), str(path))
    name = str(name_or_path)
    available = list_hw()
    if name not in available:
        hint = difflib.get_close_matches(name, available, n=1)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        raise HwConfigError(
            f"unknown hardware config '{name}'; {did}available: {', '.join(available)} "
            "(a path to a .yaml file is also accepted)"
        )
    return _load_packaged(name)


@functools.lru_cache(maxsize=None)
def _load_packaged(name: str) -> HardwareConfig:
    res = importlib.resources.files(_PACKAGE).joinpath(f"{name}.yaml")
    try:
        text = res.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HwConfigError(
            f"cannot read packaged hardware config '{name}': {_one_line(exc)}; reinstall neurocomp"
        ) from None
    return _parse_and_validate(text, f"'{name}' (packaged {name}.yaml)")


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HwConfigError(
            f"hardware config file not found: {path}; check the path or use a packaged "
            f"name ({', '.join(list_hw())})"
        ) from None
    except IsADirectoryError:
        raise HwConfigError(
            f"hardware config path {path} is a directory; give the path to a .yaml file"
        ) from None
    except UnicodeDecodeError:
        raise HwConfigError(
            f"hardware config file {path} is not UTF-8 text; save it as a UTF-8 YAML file"
        ) from None
    except OSError as exc:
        raise HwConfigError(
            f"cannot read hardware config file {path}: {_one_line(exc.strerror or exc)}; "
            "check its permissions"
        ) from None


def _parse_and_validate(text: str, origin: str) -> HardwareConfig:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark is not None and (mark is None or cmark.line != mark.line):
            problem = f"{problem} ({context} started at line {cmark.line + 1})"
        raise HwConfigError(
            f"YAML syntax error in hardware config {origin}{where}: {_one_line(problem)}; "
            "fix the YAML there"
        ) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise HwConfigError(
            f"hardware config {origin} must be a YAML mapping with keys name, description, "
            f"generation, core, chip, ...; it is {got}"
        )
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as exc:
        raise HwConfigError(_describe_validation_error(exc, origin)) from None


# -- turning pydantic errors into one-line messages ------------------------

def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; anything else unchanged."""
    if typing.get_origin(annotation) is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model_at(loc: tuple[Any, ...]) -> Optional[type[BaseModel]]:
    """The model class reached by following field names ``loc`` from the root."""
    model: Any = HardwareConfig
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _describe_validation_error(exc: ValidationError, origin: str) -> str:
    errors = exc.errors(include_url=False)
    # A misspelt key also shows up as a missing one; report the typo first.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    path = _dotted(loc) or "(top level)"
    kind = err["type"]
    expected_model = _model_at(loc)

    if kind == "missing":
        parent = _model_at(loc[:-1])
        if parent is not None and issubclass(parent, Quantity):
            what = "leaf field"
        elif expected_model is not None and issubclass(expected_model, Quantity):
            what = "quantity"
        elif expected_model is not None:
            what = "section"
        else:
            what = "key"
        msg = f"missing required {what} '{path}'"
        fix = "add it (see the packaged loihi1.yaml for an example)"
    elif kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        where = f"in '{_dotted(loc[:-1])}'" if loc[:-1] else "at the top level"
        msg = f"unknown key '{path}'"
        fix = f"{did}keys allowed {where}: {', '.join(allowed)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type") and expected_model is not None:
        got = _short_repr(err.get("input"))
        if issubclass(expected_model, Quantity):
            msg = f"'{path}' must be a quantity mapping {{value, unit, source, confirmed}}, got {got}"
            fix = "write it as {value: ..., unit: ..., source: ..., confirmed: true|false}"
        else:
            msg = f"'{path}' must be a mapping (section), got {got}"
            fix = f"give it the keys {', '.join(expected_model.model_fields)}"
    else:
        text = err["msg"]
        if text.startswith("Value error, "):
            text = text[len("Value error, "):]
            # our own validators already end their message with the fix
            msg, fix = text.split("; ", 1) if "; " in text else (text, "fix the values")
            msg = f"'{path}': {msg}"
        else:
            msg = f"'{path}': {text} (got {_short_repr(err.get('input'))})"
            fix = "fix that value"
    more = f" ({len(errors) - 1} more problem(s) after fixing this one)" if len(errors) > 1 else ""
    return _one_line(f"invalid hardware config {origin}: {msg}; {fix}{more}")


def _short_repr(value: Any, limit: int = 60) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
