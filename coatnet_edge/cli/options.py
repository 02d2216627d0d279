"""Click options built from the library's own definitions, so the CLI never retypes a default or a choice.

``library_option(owner, name)`` reads ``name`` off ``owner`` (a dataclass field, or a parameter of a
function): its default is the option's default, and its annotation the option's type (a ``Literal`` is
a choice, ``bool`` a flag, ``tuple[X, ...]`` a repeatable option, ``X | None`` an optional ``X``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


def library_option(owner: Any, name: str, *decls: str, **attrs: Any) -> Decorator:
    """``--name`` (or ``decls``) with ``owner``'s default and type for ``name``; ``attrs`` add help or override."""
    parameter = inspect.signature(owner).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{owner.__qualname__}: '{name}' has no default to offer the CLI")
    inferred = _click_type(_hint(owner, parameter.annotation))
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)),
                        **{"default": parameter.default, "show_default": True, **inferred, **attrs})


def _hint(owner: Any, annotation: Any) -> Any:
    """One annotation of ``owner``, evaluated alone (``typing.get_type_hints`` would evaluate them all); ``None``
    where it names a type that ``owner``'s module imports only inside its functions (a torch module: give ``type``)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, vars(sys.modules[owner.__module__]))
    except NameError:
        return None


def _click_type(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), tuple(a for a in typing.get_args(hint) if a is not type(None))
    if origin is Literal:
        return {"type": click.Choice(args)}
    if origin in (typing.Union, types.UnionType):
        return _click_type(args[0]) if len(args) == 1 else {}
    if origin is tuple:  # tuple[str, ...]: the option may be given several times
        return {**_click_type(args[0]), "multiple": True}
    if hint is bool:
        return {"is_flag": True}
    return {"type": hint} if hint in (int, float, str) else {}


def config_options(config: type, help_texts: Mapping[str, str], *, decls: Mapping[str, tuple[str, ...]] | None = None,
                   skip: tuple[str, ...] = ()) -> Decorator:
    """One ``library_option`` per field of the dataclass ``config`` (in field order) but ``skip``.

    Keep ``config``'s field name as the destination when ``decls`` renames an option, so
    ``config_from`` finds it.
    """
    names = [f.name for f in dataclasses.fields(config) if f.name not in skip]
    return stack(*(library_option(config, name, *(decls or {}).get(name, ()), help=help_texts.get(name))
                   for name in names))


def config_from(config: type, values: dict[str, Any]) -> Any:
    """``config`` built from the parsed values that are its fields (taken out of ``values``)."""
    names = {f.name for f in dataclasses.fields(config)}
    return config(**{name: values.pop(name) for name in list(values) if name in names})


def stack(*options: Decorator) -> Decorator:
    """Apply several option decorators as one, listed in the order they appear in ``--help``."""
    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func
    return apply


def path_option(*decls: str, **attrs: Any) -> Decorator:
    """An option that names a file or folder (given as a ``Path``; existence is checked by the library)."""
    return click.option(*decls, type=click.Path(path_type=Path), **attrs)


SOURCE_HELP = {
    "weights": "Local weights for --model timm:<name> (.safetensors, a .pth state dict or timm's .pth.tar).",
    "num_classes": "Classes of the fine-tuned head (default: read from the checkpoint or its weights).",
    "image_size": "Input size the model was trained at (timm: built at it; default: read from the checkpoint's "
                  "args / config.json, else from its relative-position tables).",
    "ema": "Load a timm training checkpoint's EMA weights (state_dict_ema) instead of state_dict.",
    "mean": "Normalization mean the model was trained with, e.g. 0.5,0.5,0.5 (one value for grayscale).",
    "std": "Normalization std, e.g. 0.5,0.5,0.5 (one value for grayscale).",
    "crop_pct": "Center-crop fraction of timm's eval transform (resize to size / crop_pct, then crop).",
    "interpolation": "Resize interpolation.",
}


def source_options(*, weights: bool = True, what: str = "", prefix: str = "",
                   dest: str = "source_options") -> Decorator:
    """``SourceOptions``' fields as options (``--image-size --ema --mean --std --crop-pct --interpolation`` and,
    with ``weights``, ``--weights --num-classes``), handed to the command as one ``dest`` argument.

    Unset options are read from the model source; ``what`` says which argument they apply to in ``--help``;
    ``prefix`` (``teacher-``) names them for a second model of the same command (``--teacher-image-size``).
    """
    from coatnet_edge.models.source_options import SourceOptions

    names = [f.name for f in dataclasses.fields(SourceOptions) if weights or f.name not in ("weights", "num_classes")]

    def option(name: str) -> Decorator:
        attrs: dict[str, Any] = {"help": SOURCE_HELP[name] + (f" Applies to {what}." if what else "")}
        if name in ("mean", "std"):
            attrs.update(type=FloatList(), multiple=False, default=None, show_default=False)
        if name == "weights":
            attrs.update(type=click.Path(path_type=Path))
        key = prefix.replace("-", "_") + name
        return library_option(SourceOptions, name, f"--{prefix}{name.replace('_', '-')}", key, **attrs)

    def bundle(func: F) -> F:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(prefix.replace("-", "_") + name) for name in names}
            values["mean"], values["std"] = values["mean"] or (), values["std"] or ()
            return func(*args, **{dest: SourceOptions(**values)}, **kwargs)
        return stack(*map(option, names))(command)  # type: ignore[return-value]

    return bundle


model_source_options = source_options()


class FloatList(click.ParamType):
    """Numbers as a comma-separated list (``0.5,0.5,0.5``), given back as a tuple of floats."""

    name = "floats"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(float(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"'{value}' is not a comma-separated list of numbers (e.g. 0.5,0.5,0.5)", param, ctx)


class BatchSizes(click.ParamType):
    """Batch sizes as a comma-separated list (``1,8``), given back as a tuple of positive integers."""

    name = "sizes"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):  # the default, already a tuple
            return value
        try:
            values = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"'{value}' is not a comma-separated list of integers (e.g. 1,8)", param, ctx)
        if not values or min(values) < 1:
            self.fail(f"'{value}': batch sizes must be >= 1 (e.g. 1,8)", param, ctx)
        return values
