"""The memory bitsandbytes' quantization state holds, counted from bitsandbytes' own objects, apart from
mistudio's loading helpers: what the estimate tests and benchmarks measure mistudio's estimates against."""

from __future__ import annotations

from typing import Any


def quant_state_tensors(model: Any) -> list[Any]:
    """Every quantization-state tensor of a loaded model: of each 8-bit layer the row scales
    (`Int8Params.SCB`, and `MatmulLtState.SCB` where bitsandbytes keeps them there), of each 4-bit layer
    its `Params4bit.quant_state` (absmax and code; nested, also the offset and the second level's
    absmax and code)."""
    import bitsandbytes as bnb

    tensors: list[Any] = []
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear8bitLt):
            tensors += [getattr(module.weight, "SCB", None), getattr(module.state, "SCB", None)]
        elif isinstance(module, bnb.nn.Linear4bit):
            tensors += four_bit_state_tensors(module.weight.quant_state)
    return [tensor for tensor in tensors if tensor is not None]


def four_bit_state_tensors(state: Any) -> list[Any]:
    """The tensors of one bitsandbytes `QuantState`."""
    tensors = [state.absmax, state.code]
    if state.nested:
        tensors += [state.offset, state.state2.absmax, state.state2.code]
    return tensors


def storage_bytes(tensors: list[Any]) -> int:
    """Bytes of the storages behind `tensors`, each storage counted once, in full."""
    storages = {tensor.untyped_storage().data_ptr(): tensor.untyped_storage().nbytes() for tensor in tensors}
    return sum(storages.values())


def footprint_plus_quant_state(model: Any) -> int:
    """transformers' `get_memory_footprint()` (parameters and buffers) plus the quantization state it omits."""
    return int(model.get_memory_footprint()) + storage_bytes(quant_state_tensors(model))
