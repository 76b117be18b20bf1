"""Configs of the tiny random models that tests build, one per supported family.

Small enough to build and run in milliseconds, shaped so that the traps of each family show:
grouped kv heads, head_dim differing from hidden/heads, tied and untied heads, biases.
"""

from __future__ import annotations

VOCAB_SIZE = 512

_TOKENS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
_DECODER = {"vocab_size": VOCAB_SIZE, "max_position_embeddings": 128, **_TOKENS}

TINY_CONFIGS: dict[str, dict] = {
    "gpt2": {
        "model_type": "gpt2",
        "n_embd": 64,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 128,
        "vocab_size": VOCAB_SIZE,
        "tie_word_embeddings": True,
        **_TOKENS,
    },
    "pythia": {
        "model_type": "gpt_neox",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "rotary_pct": 0.25,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        **_DECODER,
    },
    "llama": {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "tie_word_embeddings": False,
        **_DECODER,
    },
    "mistral": {
        "model_type": "mistral",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "tie_word_embeddings": False,
        **_DECODER,
    },
    "gemma": {
        "model_type": "gemma",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "intermediate_size": 128,
        "tie_word_embeddings": True,
        **_DECODER,
    },
    "gemma2": {
        "model_type": "gemma2",
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "tie_word_embeddings": True,
        "sliding_window": 64,
        **_DECODER,
    },
    "gemma3": {
        "model_type": "gemma3_text",
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "tie_word_embeddings": True,
        "sliding_window": 64,
        **_DECODER,
    },
    "phi": {
        "model_type": "phi",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "partial_rotary_factor": 0.5,
        "tie_word_embeddings": False,
        **_DECODER,
    },
    "phi3": {
        "model_type": "phi3",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "tie_word_embeddings": False,
        **_DECODER,
    },
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "tie_word_embeddings": True,
        **_DECODER,
    },
    "qwen3": {
        "model_type": "qwen3",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "tie_word_embeddings": False,
        **_DECODER,
    },
}
