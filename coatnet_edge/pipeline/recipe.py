"""Recipes: one TOML file that drives every stage of ``coatnet-edge run``.

A recipe is a set of frozen dataclasses, one per TOML table. Loading is strict, like a compiler:
an unknown key, a wrong type or an impossible value is a one-line error that names the recipe
file, the table and key, and the fix. Relative paths are resolved against the recipe's folder, so
a recipe and its data can move together. ``coatnet-edge run --print-recipe`` writes the built-in
recipe as TOML, the starting point for your own.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

from coatnet_edge.calibration.options import (
    ONNXRUNTIME_CANDIDATES,
    OPENVINO_CANDIDATES,
    OnnxRuntimeCandidate,
    OpenVinoCandidate,
    QuantizeOptions,
)
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.runtime import registry
from coatnet_edge.training.config import TrainConfig

TARGETS = registry.pipeline_targets()


@dataclass(frozen=True)
class SourceSection(SourceOptions):
    """The FP32 model you start from (our checkpoint, timm .pth.tar, HF folder, timm:<name>); unset: read from it.

    ``model``: ``builtin:teacher``, our checkpoint, ``timm:<name>`` + ``weights``, a timm training
    checkpoint (``model_best.pth.tar``) or a Hugging Face folder; the other keys are ``SourceOptions``' (``image_size``,
    ``ema``, ``mean``, ``std``, ``crop_pct``, ``interpolation``), each read from the source when unset."""

    model: str = "builtin:teacher"

    @property
    def options(self) -> SourceOptions:
        """How to read ``model`` (the ``weights`` path as the recipe states it; ``run`` resolves it)."""
        return SourceOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SourceOptions)})


@dataclass(frozen=True)
class DataSection:
    """Image folders. Without ``train`` the built-in dataset is generated into ``<out>/data``."""

    train: str | None = None
    val: str | None = None
    builtin_seed: int = 0


@dataclass(frozen=True)
class DistillSection(TrainConfig):
    """Teacher -> student knowledge distillation (off: the source model itself is deployed).

    The training keys are ``TrainConfig``'s own (train/distill verbs take the same), with defaults
    for the demo: the built-in recipe starts from the shipped, already distilled ``builtin:student``
    and runs two short KD epochs; ``student = "coatnet_pico"`` with ~60 epochs distils from scratch
    (the recipe of the shipped student, 24 min on 2 cores). ``seed`` unset: the recipe's seed.
    """

    enabled: bool = True
    student: str = "builtin:student"
    epochs: int = 2
    lr: float = 5e-4
    warmup_epochs: float = 0.0
    min_crop_scale: float = 0.6
    seed: int | None = None  # type: ignore[assignment]

    def train_config(self, seed: int) -> TrainConfig:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{**values, "seed": seed if self.seed is None else self.seed})


@dataclass(frozen=True)
class QuantizeSection(QuantizeOptions):
    """INT8: PTQ or QAT (NNCF; Model Optimizer as an optional candidate) into the Q/DQ ONNX the targets start from.

    The INT8 keys are ``QuantizeOptions``' own, with its defaults and allowed values (the quantize verb's options:
    ``--ignore`` is ``ignored_patterns``, ``--candidate`` is ``candidates``). The recipe adds the switch, the
    calibration folder (unset: the training split) and the QAT epochs. ``seed`` unset: the recipe's seed.
    """

    enabled: bool = True
    seed: int | None = None  # type: ignore[assignment]
    calib_dir: str | None = None
    qat_epochs: int = 3

    def options(self, seed: int) -> QuantizeOptions:
        """The ``QuantizeOptions`` this section states (``seed``: the recipe's, unless the section sets its own)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(QuantizeOptions)}
        return QuantizeOptions(**{**values, "seed": seed if self.seed is None else self.seed})


@dataclass(frozen=True)
class TargetsSection:
    """What to build. Targets this machine cannot build (TensorRT without a GPU) are reported as skipped."""

    build: tuple[str, ...] = TARGETS
    openvino_device: str = "CPU"
    # openvino-int8: paths measured in OpenVINO on held-out images; the first (the plain path) is kept unless another
    # is more faithful beyond its paired interval (see `export --help`)
    openvino_int8_candidates: tuple[OpenVinoCandidate, ...] = OPENVINO_CANDIDATES
    # onnxruntime-int8: quantize_static (the baseline), a tuned u8 graph and the Q/DQ graph, measured the same way
    onnxruntime_int8_candidates: tuple[OnnxRuntimeCandidate, ...] = ONNXRUNTIME_CANDIDATES
    tensorrt_max_batch: int = 32


@dataclass(frozen=True)
class EvaluateSection:
    """Accuracy data (default: the validation split) and an optional cap on images."""

    data: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class BenchmarkSection:
    """Latency method: warm-up runs, timed runs, batch sizes and runtime threads."""

    batches: tuple[int, ...] = (1, 8)
    warmup: int = 10
    runs: int = 50
    threads: int | None = None


@dataclass(frozen=True)
class Recipe:
    out: str = "runs/default"
    seed: int = 0
    source: SourceSection = field(default_factory=SourceSection)
    data: DataSection = field(default_factory=DataSection)
    distill: DistillSection = field(default_factory=DistillSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    targets: TargetsSection = field(default_factory=TargetsSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record.pop("path")
        return record

    def with_absolute_paths(self) -> Recipe:
        """The same recipe with every path made absolute: the copy kept in the run folder still works there."""
        def fix(value: str | None) -> str | None:
            return None if value is None else str(self.resolve(value).resolve())

        def file_or_name(value: str) -> str:  # a variant or timm name stays; a file or folder becomes absolute
            if value.startswith(("builtin:", "timm:")):
                return value
            return fix(value) if Path(value).suffix or self.resolve(value).is_dir() else value

        return dataclasses.replace(
            self, out=fix(self.out),
            source=dataclasses.replace(self.source, model=file_or_name(self.source.model),
                                       weights=fix(self.source.weights)),
            data=dataclasses.replace(self.data, train=fix(self.data.train), val=fix(self.data.val)),
            distill=dataclasses.replace(self.distill, student=file_or_name(self.distill.student)),
            quantize=dataclasses.replace(self.quantize, calib_dir=fix(self.quantize.calib_dir)),
            evaluate=dataclasses.replace(self.evaluate, data=fix(self.evaluate.data)))

    def resolve(self, value: str | None) -> Path | None:
        """A path from the recipe: relative ones are relative to the recipe's folder (or the working folder)."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or self.path is None else self.path.parent / path


_POSITIVE = {("quantize", "qat_epochs"), ("benchmark", "runs"),
             ("targets", "tensorrt_max_batch")}  # [distill], [quantize]: TrainConfig, QuantizeOptions check their own


def load_recipe(source: str | Path | dict[str, Any] | Recipe | None = None) -> Recipe:
    """The built-in recipe (``None``), a TOML file, a dict shaped like the TOML, or a ``Recipe``."""
    if source is None:
        return Recipe()
    if isinstance(source, Recipe):
        return source
    if isinstance(source, dict):
        return _build(source, where=Path("<recipe dict>"), path=None)
    path = Path(source)
    if not path.is_file():
        raise CoatnetEdgeError("recipe file not found", path=path,
                               fix="check the path, or start from `coatnet-edge run --print-recipe > recipe.toml`")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CoatnetEdgeError(f"not valid TOML ({err})", path=path,
                               fix="fix the syntax, or start from `coatnet-edge run --print-recipe`") from None
    return _build(table, where=path, path=path.resolve())


def _build(table: dict[str, Any], *, where: Path, path: Path | None) -> Recipe:
    sections = {f.name: f for f in dataclasses.fields(Recipe) if f.name != "path"}
    _check_keys(table, sections, where, "top level")
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(Recipe)
    for name, value in table.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise CoatnetEdgeError(f"'{name}' must be a table ([{name}])", path=where,
                                       fix=f"write it as a [{name}] section")
            values[name] = _section(kind, name, value, where)
        else:
            values[name] = _coerce(value, kind, where, name)
    recipe = Recipe(**values, path=path)
    _check_values(recipe, where)
    return recipe


def _section(kind: type, name: str, table: dict[str, Any], where: Path) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    _check_keys(table, fields, where, f"[{name}]")
    hints = typing.get_type_hints(kind)
    values = {key: _coerce(value, hints[key], where, f"[{name}] {key}") for key, value in table.items()}
    try:
        return kind(**values)
    except CoatnetEdgeError as err:  # a section's own checks (TrainConfig's, QuantizeOptions'): name the recipe
        raise CoatnetEdgeError(f"[{name}] {err.reason}", path=where, fix=err.fix) from None


def _check_keys(table: dict[str, Any], known: dict[str, Any], where: Path, scope: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise CoatnetEdgeError(f"unknown key '{key}' in {scope}", path=where,
                                   fix=f"{hint}known keys: {', '.join(known)}")


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"a list of {_type_name(typing.get_args(kind)[0]).removeprefix('an ').removeprefix('a ')}s"
    return names.get(kind, str(kind))


def _coerce(value: Any, kind: Any, where: Path, key: str) -> Any:
    """Check one TOML value against the field's type (TOML has no null: leave a key out for 'none')."""
    if isinstance(kind, types.UnionType):  # X | None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    ok = False
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif typing.get_origin(kind) is typing.Literal:  # a choice: its allowed values live in the type
        allowed = typing.get_args(kind)
        if isinstance(value, str) and value not in allowed:
            raise CoatnetEdgeError(f"{key} = {value!r} is not one of {', '.join(allowed)}", path=where,
                                   fix=f"use one of: {', '.join(allowed)}")
        ok = isinstance(value, str)
    elif typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        ok = isinstance(value, list)
        if ok and typing.get_origin(item) is typing.Literal:  # a list of choices: each one checked
            value = tuple(_coerce(v, item, where, key) for v in value)
        else:
            ok = ok and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
            value = tuple(value) if ok else value
    if not ok:
        raise CoatnetEdgeError(f"{key} must be {_type_name(kind)}, got {value!r}", path=where,
                               fix="e.g. `coatnet-edge run --print-recipe` shows every key with its default")
    return value


def _check_values(recipe: Recipe, where: Path) -> None:
    for section, key in _POSITIVE:
        value = getattr(getattr(recipe, section), key)
        if value <= 0:
            raise CoatnetEdgeError(f"[{section}] {key} must be > 0, got {value}", path=where,
                                   fix="use a positive value")
    for target in recipe.targets.build:
        if target not in TARGETS:
            close = difflib.get_close_matches(target, TARGETS, n=1)
            raise CoatnetEdgeError(f"[targets] build has unknown target '{target}'", path=where,
                                   fix=(f"did you mean '{close[0]}'? " if close else "") + f"use: {', '.join(TARGETS)}")
    if not recipe.quantize.enabled and any(registry.for_target(t)[1].startswith("int8") for t in recipe.targets.build):
        raise CoatnetEdgeError("[targets] build asks for INT8 targets but [quantize] enabled = false", path=where,
                               fix="enable [quantize] or drop the *-int8 targets")
    if not recipe.benchmark.batches or any(b < 1 for b in recipe.benchmark.batches):
        raise CoatnetEdgeError(f"[benchmark] batches must be positive integers, got {list(recipe.benchmark.batches)}",
                               path=where, fix="e.g. batches = [1, 8]")
    if recipe.source.model.startswith("timm:") and recipe.source.weights is None:
        raise CoatnetEdgeError(f"[source] model = '{recipe.source.model}' needs its fine-tuned weights", path=where,
                               fix="add weights = \"path/to/model.safetensors\" to [source]")
    if recipe.data.train is None and recipe.data.val is not None:
        raise CoatnetEdgeError("[data] val is set but train is not", path=where,
                               fix="set [data] train too (the built-in data has its own val split)")


def recipe_toml(recipe: Recipe | None = None) -> str:
    """The recipe as TOML, every key written (unset optional keys as comments)."""
    recipe = recipe or Recipe()
    lines = ["# coatnet-edge recipe: `coatnet-edge run THIS.toml`. Relative paths are relative to this file.",
             f"out = {_toml(recipe.out)}", f"seed = {recipe.seed}"]
    for f in dataclasses.fields(Recipe):
        section = getattr(recipe, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        doc = (type(section).__doc__ or "").strip().splitlines()[0].replace("``", "`")
        lines += ["", f"[{f.name}]  # {doc}"]
        values = dataclasses.asdict(section)
        own = [k for k in ("enabled", "student", "model") if k in values]  # a section's switch and subject first
        for key, value in sorted(values.items(), key=lambda item: item[0] not in own):
            unset = value is None or value == ()
            lines.append(f"# {key} = ...  (unset)" if unset else f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
