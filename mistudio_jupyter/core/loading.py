"""Load a downloaded snapshot with transformers, optionally quantized by bitsandbytes.

transformers' own defaults for bitsandbytes are fp4 with an fp32 compute dtype and an fp32 rest: a trap
that quietly doubles memory and slows everything. Here 4-bit is always nf4 with a bf16 compute dtype
(fp16 where the GPU has no bf16), and the unquantized rest is loaded in that dtype too.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, NotFound, UnsafeRepo
from .options import DTYPES, QUANTIZATIONS, validate_choice


@dataclasses.dataclass
class LoadedModel:
    """A loaded model with its tokenizer (None when the snapshot has none) and what loading cost."""

    model: Any
    tokenizer: Any
    measured_memory_bytes: int
    load_time_s: float


def load_model(
    snapshot_dir: str | Path,
    *,
    quantization: str = "none",
    dtype: str = "auto",
    device_map: str | dict[str, Any] | None = "auto",
    double_quant: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load the model in `snapshot_dir` from local files only.

    quantization: none | bnb-8bit | bnb-4bit (nf4; `double_quant` adds nested quantization of absmax).
    dtype: auto | float32 | float16 | bfloat16, for the whole model or the part bitsandbytes leaves alone;
    "auto" keeps the checkpoint's dtype, or bf16/fp16 under quantization.
    """
    validate_choice("quantization", quantization, QUANTIZATIONS)
    validate_choice("dtype", dtype, DTYPES)
    snapshot = Path(snapshot_dir)
    if not (snapshot / "config.json").is_file():
        raise NotFound(f"no config.json in {snapshot}: not a downloaded model snapshot")

    import torch
    from transformers import AutoConfig

    from .anatomy.sizing import auto_model_class

    started = time.perf_counter()
    try:
        hf_config = AutoConfig.from_pretrained(snapshot, local_files_only=True, trust_remote_code=trust_remote_code)
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise UnsafeRepo(
                f"{snapshot} needs custom code from the repo; pass trust_remote_code=True to run it"
            ) from None
        raise
    compute_dtype = torch.bfloat16 if _bf16_supported(device_map) else torch.float16
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype, quantization, compute_dtype), "device_map": device_map}
    if quantization != "none":
        kwargs["quantization_config"] = bnb_config(quantization, compute_dtype, double_quant)
    model = auto_model_class(hf_config).from_pretrained(
        snapshot, config=hf_config, local_files_only=True, trust_remote_code=trust_remote_code, **kwargs
    )
    model.eval()
    _release_freed_heap()
    load_time = time.perf_counter() - started
    return LoadedModel(model, _tokenizer(snapshot, trust_remote_code), measured_memory_bytes(model), load_time)


def bnb_config(quantization: str, compute_dtype: Any, double_quant: bool = False) -> Any:
    """The BitsAndBytesConfig for an option: 8-bit, or nf4 4-bit computing in `compute_dtype`."""
    from transformers import BitsAndBytesConfig

    if quantization == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "bnb-4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_quant_storage="uint8",
        )
    raise InvalidArgument(f"unknown quantization {quantization!r}; expected bnb-8bit or bnb-4bit")


def measured_memory_bytes(model: Any) -> int:
    """`get_memory_footprint()` plus the bitsandbytes quant state it leaves out."""
    return int(model.get_memory_footprint()) + quant_state_nbytes(model)


def quant_state_nbytes(model: Any) -> int:
    """Bytes of bitsandbytes quantization state: 8-bit row scales (SCB) and every tensor of each 4-bit
    QuantState (absmax, code, offset and the nested state), each storage counted once."""
    seen: dict[int, int] = {}
    for parameter in model.parameters():
        for tensor in _state_tensors(parameter):
            seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def _state_tensors(parameter: Any) -> list[Any]:
    state = getattr(parameter, "quant_state", None)
    tensors = []
    while state is not None:
        tensors += [t for t in (state.absmax, state.code, getattr(state, "offset", None)) if t is not None]
        state = getattr(state, "state2", None)
    scale = getattr(parameter, "SCB", None)
    return tensors + ([scale] if scale is not None else [])


def _release_freed_heap() -> None:
    """Hand the heap that converting/quantizing freed back to the OS. glibc keeps freed arenas otherwise,
    and a bnb CPU load of pythia-70m would keep ~80 MB of freed temporaries for the process's lifetime."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _torch_dtype(dtype: str, quantization: str, compute_dtype: Any) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    return compute_dtype if quantization != "none" else "auto"


def _bf16_supported(device_map: Any) -> bool:
    import torch

    if device_map == "cpu" or not torch.cuda.is_available():
        return True
    return bool(torch.cuda.is_bf16_supported())


def _tokenizer(snapshot: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(snapshot, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError):
        return None
