"""Hook points of a model and activation capture at them.

:func:`hook_points` lists the canonical TransformerLens/SAELens names a model offers (from its config
alone), :func:`module_hook_points` the raw ``module:{path}:input|output`` hooks of every module, and
:func:`capture` records activations at any of them on a plain or bitsandbytes-quantized Hugging Face
model, returning canonical shapes.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from ..errors import InvalidArgument
from .architecture import ConfigLike, load_config, meta_model, model_dims
from .families import TABLES, Category, FamilyTable, HookSpec, Kind, Norm, is_verified

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PretrainedConfig

Source = Union[ConfigLike, "nn.Module"]
"""A config (``config.json`` dict or transformers config) or a model."""

_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")
_MODULE_PREFIX = "module:"
_GENERIC_NOTE = " (generic table: this architecture has no verified hook table)"


@dataclass(frozen=True)
class Extraction:
    """How a hook's value is taken from the module's input or output (see :class:`families.HookSpec`)."""

    index: int = 0
    sizes: tuple[int, ...] | None = None
    part: int = 0
    per_head: bool = False
    normalize: Norm | None = None


@dataclass(frozen=True)
class HookPoint:
    """A place activations can be captured: a canonical name bound to a module of one model config."""

    name: str
    module: str
    kind: Kind
    layer: int | None
    shape: tuple[str | int, ...]
    computed: bool
    description: str
    category: Category
    symbolic_shape: tuple[str, ...] = ()
    generic: bool = False
    extraction: Extraction = field(default_factory=Extraction, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of one hook point (`HookPoint` in the OpenAPI document)."""
        return {
            "name": self.name,
            "module": self.module,
            "kind": self.kind,
            "layer": self.layer,
            "shape": list(self.shape),
            "computed": self.computed,
            "description": self.description,
            "category": self.category,
            "generic": self.generic,
        }


def hook_points(source: Source, *, modules: bool = False) -> list[HookPoint]:
    """The canonical hook points of ``source``'s architecture, in forward order.

    Built from the config alone for verified families; unknown architectures get the generic table
    (embedding, resid_pre/post) found on a meta-device model. With ``modules``, the raw module hooks of
    :func:`module_hook_points` follow.
    """
    config, model = _split(source)
    table = _table(config, model)
    symbols = model_dims(config).symbols()
    points = [
        _point(spec, table, layer, symbols)
        for spec in table.hooks.values()
        for layer in (range(config.num_hidden_layers) if spec.per_layer else [None])
    ]
    last = config.num_hidden_layers
    points.sort(key=lambda p: p.layer if p.layer is not None else -1 if p.category == "embedding" else last)
    return points + (module_hook_points(source) if modules else [])


def module_hook_points(source: Source) -> list[HookPoint]:
    """``module:{path}:input`` and ``module:{path}:output`` for every module of the model."""
    config, model = _split(source)
    structure = model or meta_model(config)
    layers = _table(config, model).layers
    return [
        _module_point(path, module, kind, layers)
        for path, module in structure.named_modules()
        if path
        for kind in ("input", "output")
    ]


def resolve_hook(source: Source, name: str) -> HookPoint:
    """The hook point called ``name``; raises :class:`InvalidArgument` for names the model lacks.

    Accepts canonical names (``blocks.3.hook_resid_post``) and raw module hooks
    (``module:model.layers.3.mlp:output``; a bare ``module:{path}`` means its output).
    """
    config, model = _split(source)
    table = _table(config, model)
    if name.startswith(_MODULE_PREFIX):
        return _resolve_module(model or meta_model(config), name, table.layers)
    match = _BLOCK_NAME.fullmatch(name)
    layer = int(match[1]) if match else None
    template = f"blocks.{{i}}.{match[2]}" if match else name
    if template in table.refused:
        raise InvalidArgument(
            f"{name} does not exist in {config.model_type}: {table.refused[template].format(i=layer)}"
        )
    spec = table.hooks.get(template)
    if spec is None or spec.per_layer != (layer is not None):
        raise InvalidArgument(_unknown_message(name, template, layer, table, config.model_type))
    if layer is not None and layer >= config.num_hidden_layers:
        raise InvalidArgument(
            f"{name}: layer {layer} is out of range; the model has layers 0–{config.num_hidden_layers - 1}."
        )
    return _point(spec, table, layer, model_dims(config).symbols())


def _split(source: Source) -> tuple[PretrainedConfig, nn.Module | None]:
    if hasattr(source, "named_modules") and hasattr(source, "config"):
        return source.config, source
    return load_config(source), None


def _table(config: PretrainedConfig, model: nn.Module | None) -> FamilyTable:
    if is_verified(config.model_type):
        return TABLES[config.model_type]
    return _generic_table(config, model or meta_model(config))


def _generic_table(config: PretrainedConfig, model: nn.Module) -> FamilyTable:
    """resid_pre/resid_post on the decoder-layer list, and the token embedding, of any architecture."""
    from torch import nn

    lists = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == config.num_hidden_layers
    ]
    if not lists:
        raise InvalidArgument(
            f"No list of {config.num_hidden_layers} decoder layers found in "
            f"{type(model).__name__}; only raw module hooks are available."
        )
    embedding = model.get_input_embeddings()
    embed_path = next(path for path, module in model.named_modules() if module is embedding)
    hooks = {
        "hook_embed": HookSpec(
            "hook_embed", embed_path, "output", ("B", "P", "D"), "embedding", "Token embeddings" + _GENERIC_NOTE + "."
        ),
        "blocks.{i}.hook_resid_pre": HookSpec(
            "blocks.{i}.hook_resid_pre",
            "{layer}",
            "input",
            ("B", "P", "D"),
            "residual",
            "Residual stream entering block i" + _GENERIC_NOTE + ".",
        ),
        "blocks.{i}.hook_resid_post": HookSpec(
            "blocks.{i}.hook_resid_post",
            "{layer}",
            "output",
            ("B", "P", "D"),
            "residual",
            "Residual stream leaving block i" + _GENERIC_NOTE + ".",
        ),
    }
    return FamilyTable(config.model_type, lists[0][0], hooks, {})


def _point(spec: HookSpec, table: FamilyTable, layer: int | None, symbols: Mapping[str, int]) -> HookPoint:
    split = spec.split
    return HookPoint(
        name=spec.name.format(i=layer),
        module=spec.module.format(layer=f"{table.layers}.{layer}"),
        kind=spec.kind,
        layer=layer,
        shape=tuple(int(symbol) if symbol.isdigit() else symbols.get(symbol, symbol) for symbol in spec.shape),
        computed=spec.computed,
        description=spec.description,
        category=spec.category,
        symbolic_shape=spec.shape,
        generic=not is_verified(table.model_type),
        extraction=Extraction(
            index=spec.index,
            sizes=tuple(_size(size, symbols) for size in split.sizes) if split else None,
            part=split.part if split else 0,
            per_head=split.per_head if split else False,
            normalize=spec.normalize,
        ),
    )


def _size(expression: str, symbols: Mapping[str, int]) -> int:
    """Evaluates a product of symbols such as ``Hkv*Dh``."""
    return functools.reduce(lambda total, symbol: total * symbols[symbol], expression.split("*"), 1)


def _module_point(path: str, module: nn.Module, kind: Kind, layers: str) -> HookPoint:
    match = re.match(rf"{re.escape(layers)}\.(\d+)(\.|$)", path)
    return HookPoint(
        name=f"{_MODULE_PREFIX}{path}:{kind}",
        module=path,
        kind=kind,
        layer=int(match[1]) if match else None,
        shape=(),
        computed=False,
        category="module",
        description=f"{kind.capitalize()} of {path} ({type(module).__name__}); first element if a tuple.",
    )


def _resolve_module(structure: nn.Module, name: str, layers: str) -> HookPoint:
    path, _, kind = name.removeprefix(_MODULE_PREFIX).rpartition(":")
    if kind not in ("input", "output"):
        path, kind = name.removeprefix(_MODULE_PREFIX), "output"
    try:
        module = structure.get_submodule(path)
    except AttributeError as error:
        raise InvalidArgument(f"{name}: the model has no module {path!r}.") from error
    return _module_point(path, module, kind, layers)


def _unknown_message(name: str, template: str, layer: int | None, table: FamilyTable, model_type: str) -> str:
    close = difflib.get_close_matches(template, list(table.hooks), n=3)
    hint = f" Did you mean {', '.join(c.format(i=layer if layer is not None else 0) for c in close)}?" if close else ""
    return (
        f"Unknown hook {name!r} for {model_type}.{hint} Raw module hooks are named "
        f"'module:<path>:input' or 'module:<path>:output'."
    )


class _StopForward(Exception):
    """Raised inside a hook to end the forward pass once every requested hook has fired."""


_UNSET = object()


@contextmanager
def capture(
    model: nn.Module,
    hooks: str | HookPoint | Iterable[str | HookPoint],
    *,
    stop_after_last: bool = False,
    to_cpu: bool = True,
    dtype: torch.dtype | None = None,
    accumulate: bool = False,
) -> Iterator[dict[str, Any]]:
    """Record activations at ``hooks`` during forward passes of ``model`` run inside the block.

    Yields a dict filled as the model runs: name → tensor in its canonical shape (the last forward
    pass wins), or name → list of tensors, one per forward pass, with ``accumulate``. With
    ``stop_after_last``, each forward pass ends as soon as every hook has fired (``model(...)`` then
    returns ``None``), skipping the layers no hook needs. Tensors are detached, cast to ``dtype`` and
    moved to the CPU unless ``to_cpu`` is false. Every hook is removed on exit, also on error.
    """
    points = _requested(model, hooks)
    store: dict[str, Any] = {point.name: [] for point in points} if accumulate else {}
    pending = {point.name for point in points}

    def record(group: list[HookPoint], value: Callable[[HookPoint], torch.Tensor], eps: float | None) -> None:
        for point in group:
            tensor = _extract(point, value(point), eps).detach()
            tensor = tensor.to(dtype=dtype, device="cpu" if to_cpu else None)
            if accumulate:
                store[point.name].append(tensor)
            else:
                store[point.name] = tensor
            pending.discard(point.name)
        if stop_after_last and not pending:
            pending.update(point.name for point in points)
            raise _StopForward

    def restart() -> None:
        pending.update(point.name for point in points)

    handles = [
        _register(model.get_submodule(path), kind, group, record) for (path, kind), group in _grouped(points).items()
    ]
    own_forward = model.__dict__.get("forward", _UNSET)
    try:
        if stop_after_last:
            model.forward = _stopping(model.forward, restart)
        yield store
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
        if own_forward is _UNSET:
            model.__dict__.pop("forward", None)
        else:
            model.forward = own_forward


def _requested(model: nn.Module, hooks: str | HookPoint | Iterable[str | HookPoint]) -> list[HookPoint]:
    items = [hooks] if isinstance(hooks, (str, HookPoint)) else list(hooks)
    points = {}
    for item in items:
        point = item if isinstance(item, HookPoint) else resolve_hook(model, item)
        points[point.name] = point
    if not points:
        raise InvalidArgument("capture() needs at least one hook.")
    return list(points.values())


def _grouped(points: list[HookPoint]) -> dict[tuple[str, Kind], list[HookPoint]]:
    groups: dict[tuple[str, Kind], list[HookPoint]] = {}
    for point in points:
        groups.setdefault((point.module, point.kind), []).append(point)
    return groups


def _register(module: nn.Module, kind: Kind, group: list[HookPoint], record: Callable[..., None]) -> Any:
    """One torch hook per (module, kind) serving every requested point there."""
    eps = next((getattr(module, attr) for attr in ("eps", "variance_epsilon") if hasattr(module, attr)), None)
    if kind == "input":

        def pre_hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            record(group, lambda _point: _first_input(args, kwargs), eps)

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def forward_hook(_module: nn.Module, _args: tuple, output: Any) -> None:
        record(group, lambda point: _output_item(point, output), eps)

    return module.register_forward_hook(forward_hook)


def _stopping(forward: Callable[..., Any], restart: Callable[[], None]) -> Callable[..., Any]:
    """``forward`` that returns ``None`` when a hook ends the pass early."""

    @functools.wraps(forward)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        restart()
        try:
            return forward(*args, **kwargs)
        except _StopForward:
            return None

    return wrapper


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    # llama-style layers call self_attn(hidden_states=...), so inputs may arrive as keywords.
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    import torch

    return next(value for value in kwargs.values() if isinstance(value, torch.Tensor))


def _output_item(point: HookPoint, output: Any) -> torch.Tensor:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    item = output[point.extraction.index]
    if item is None:
        raise InvalidArgument(
            f"{point.name}: {point.module} returned no attention weights; load the model "
            "with attn_implementation='eager' to capture attention patterns."
        )
    return item


def _extract(point: HookPoint, value: torch.Tensor, eps: float | None) -> torch.Tensor:
    """The canonical view of ``value``: fused projections split, heads unflattened, norms applied."""
    extraction = point.extraction
    if extraction.per_head:
        value = value.unflatten(-1, (point.shape[-2], -1))
    if extraction.sizes:
        value = value.split(extraction.sizes, dim=-1)[extraction.part]
    if extraction.normalize:
        value = _normalized(value, extraction.normalize, eps)
    if point.symbolic_shape[-1:] == ("Dh",) and not extraction.per_head:
        value = value.unflatten(-1, (-1, point.shape[-1]))
    return value


def _normalized(x: torch.Tensor, norm: Norm, eps: float | None) -> torch.Tensor:
    """LayerNorm/RMSNorm without the learned gain and bias, as TransformerLens' ``hook_normalized``."""
    import torch

    h = x.float()
    if norm == "layernorm":
        h = h - h.mean(-1, keepdim=True)
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + (eps or 0.0))).to(x.dtype)
