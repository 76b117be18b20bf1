// Sample server answers for the view tests. Each must be a valid answer of its route by the OpenAPI
// document (tests/js_contract.py checks them; `make test-js` runs it).
const GB = 1e9;

export function record(overrides = {}) {
  return {
    id: "m1",
    name: "google/gemma-2-2b",
    repo_id: "google/gemma-2-2b",
    revision: "main",
    commit: "c0ffee1234567890c0ffee1234567890c0ffee12",
    status: "ready",
    quantization: "bnb-4bit",
    dtype: "auto",
    family: "gemma2",
    model_type: "gemma2",
    params: 2_614_341_888,
    size_bytes: 1.5 * GB,
    file_path: "/cache/models--google--gemma-2-2b",
    bytes_done: 1.5 * GB,
    bytes_total: 1.5 * GB,
    progress: 1,
    speed_bps: null,
    eta_s: null,
    current_file: null,
    connections: null,
    error: null,
    note: null,
    requested_by: null,
    gated: true,
    summary: { hidden_size: 2304, num_layers: 26, num_heads: 8 },
    measured_memory_bytes: null,
    load_time_s: null,
    created_at: "2025-01-01T00:00:00Z",
    updated_at: "2025-01-01T00:00:00Z",
    ...overrides,
  };
}

/** `GET /models/{id}` of an entry that a kernel has loaded. */
export const inUse = (overrides = {}) =>
  record({ leases: [{ holder: "alice@gpu1 pid 4242 kernel", created_at: "2025-01-02T10:15:00Z" }], ...overrides });

export const downloading = (overrides = {}) =>
  record({
    id: "m2",
    name: "tiny/gpt2",
    repo_id: "tiny/gpt2",
    status: "downloading",
    quantization: "none",
    dtype: "float32",
    family: "gpt2",
    model_type: "gpt2",
    params: 124_439_808,
    size_bytes: null,
    bytes_done: 256e6,
    bytes_total: 512e6,
    progress: 0.5,
    speed_bps: 10.5e6,
    eta_s: 25,
    current_file: "model.safetensors",
    connections: 8,
    summary: { hidden_size: 768, num_layers: 12, num_heads: 12 },
    ...overrides,
  });

const memory = (total) => ({
  weights_bytes: Math.round(total * 0.9),
  quant_state_bytes: 0,
  overhead_bytes: Math.round(total * 0.05),
  kv_cache_bytes: Math.round(total * 0.05),
  peak_load_bytes: Math.round(total * 1.2),
  total_bytes: Math.round(total),
});

export function preview(overrides = {}) {
  return {
    repo_id: "tiny/llama",
    revision: "main",
    commit: "abcdef0123456789abcdef0123456789abcdef01",
    family: "llama",
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    hidden_size: 4096,
    num_layers: 32,
    num_heads: 32,
    num_kv_heads: 8,
    head_dim: 128,
    intermediate_size: 14336,
    vocab_size: 128256,
    context_length: 8192,
    tied_embeddings: false,
    params: 8_030_261_248,
    params_by_dtype: { BF16: 8_030_261_248 },
    params_by_type: {
      embedding: 525_336_576,
      attention: 1_342_177_280,
      mlp: 5_637_144_576,
      norm: 266_240,
      lm_head: 525_336_576,
    },
    files: [{ path: "model.safetensors", size: 16 * GB }],
    download_bytes: 16 * GB,
    gated: false,
    license: "llama3",
    tags: [],
    warnings: ["remote code is not used"],
    capabilities: {
      causal_lm: true,
      tokenizer: true,
      chat_template: true,
      context_length: 8192,
      hook_table: "verified",
    },
    memory: {
      fp32: memory(32 * GB),
      fp16: memory(16 * GB),
      bf16: memory(16 * GB),
      "bnb-8bit": memory(9 * GB),
      "bnb-4bit": memory(5.5 * GB),
      "bnb-4bit-dq": memory(5.2 * GB),
    },
    fit: {
      fp32: { gpu: false, ram: false, verdict: "none" },
      fp16: { gpu: false, ram: true, verdict: "cpu" },
      bf16: { gpu: false, ram: true, verdict: "cpu" },
      "bnb-8bit": { gpu: true, ram: true, verdict: "gpu" },
      "bnb-4bit": { gpu: true, ram: true, verdict: "gpu" },
      "bnb-4bit-dq": { gpu: true, ram: true, verdict: "gpu" },
    },
    system: {
      gpus: [{ index: 0, name: "NVIDIA T4", total_bytes: 16 * GB, free_bytes: 12 * GB }],
      ram: { total_bytes: 32 * GB, available_bytes: 24 * GB },
    },
    ...overrides,
  };
}

const line = (weights, quant, overhead, kv, peak) => ({
  weights_bytes: weights * GB,
  quant_state_bytes: quant * GB,
  overhead_bytes: overhead * GB,
  kv_cache_bytes: kv * GB,
  peak_load_bytes: peak * GB,
  total_bytes: (weights + quant + overhead + kv) * GB,
});

/** An estimate with round numbers: 80 GB GPU (16 GB free), 64 GB RAM (48 GB available). */
export function estimate(overrides = {}) {
  return {
    repo_id: "tiny/llama",
    params: 8_030_261_248,
    memory: {
      fp32: line(32, 0, 4, 4, 52),
      bf16: line(16, 0, 2, 2, 22),
      "bnb-4bit": line(6, 1, 2, 1, 10),
    },
    fit: {
      fp32: { gpu: false, ram: false, verdict: "none" },
      bf16: { gpu: false, ram: true, verdict: "cpu" },
      "bnb-4bit": { gpu: true, ram: true, verdict: "gpu" },
    },
    system: {
      gpus: [{ index: 0, name: "NVIDIA H100", total_bytes: 80 * GB, free_bytes: 16 * GB }],
      ram: { total_bytes: 64 * GB, available_bytes: 48 * GB },
    },
    ...overrides,
  };
}

const linear = (path, name, rows, cols) => ({
  path,
  name,
  class_name: "Linear",
  own_params: rows * cols,
  total_params: rows * cols,
  parameters: [{ name: "weight", shape: [rows, cols], dtype: "float32", tied_to: null }],
  repeated: 1,
  children: [],
});

export function architecture() {
  return {
    summary: {
      hidden_size: 768,
      num_layers: 12,
      num_heads: 12,
      num_kv_heads: 12,
      head_dim: 64,
      intermediate_size: 3072,
      vocab_size: 50257,
      context_length: 1024,
      params: 124_439_808,
      params_by_type: { embedding: 39_383_808, attention: 28_348_416, mlp: 56_669_184, norm: 38_400 },
    },
    tree: {
      path: "",
      name: "",
      class_name: "GPT2LMHeadModel",
      own_params: 0,
      total_params: 124_439_808,
      parameters: [],
      repeated: 1,
      children: [
        {
          path: "transformer",
          name: "transformer",
          class_name: "GPT2Model",
          own_params: 0,
          total_params: 124_439_808,
          parameters: [],
          repeated: 1,
          children: [
            { ...linear("transformer.wte", "wte", 50257, 768), class_name: "Embedding" },
            {
              path: "transformer.h",
              name: "h",
              class_name: "ModuleList",
              own_params: 0,
              total_params: 85_054_464,
              parameters: [],
              repeated: 1,
              children: [
                {
                  path: "transformer.h.0",
                  name: "0",
                  class_name: "GPT2Block",
                  own_params: 0,
                  total_params: 7_087_872,
                  parameters: [],
                  repeated: 12,
                  children: [
                    linear("transformer.h.0.attn.c_attn", "c_attn", 768, 2304),
                    {
                      path: "transformer.h.0.act",
                      name: "act",
                      class_name: "NewGELU",
                      own_params: 0,
                      total_params: 0,
                      parameters: [],
                      repeated: 1,
                      children: [],
                    },
                  ],
                },
              ],
            },
            { ...linear("transformer.ln_f", "ln_f", 2, 768), class_name: "LayerNorm" },
          ],
        },
        {
          ...linear("lm_head", "lm_head", 50257, 768),
          own_params: 0, // tied: counted at transformer.wte
          total_params: 0,
          parameters: [{ name: "weight", shape: [50257, 768], dtype: "float32", tied_to: "transformer.wte.weight" }],
        },
      ],
    },
  };
}

export function hooks() {
  const list = [
    {
      name: "hook_embed",
      module: "transformer.wte",
      kind: "output",
      layer: null,
      shape: ["batch", "seq", 768],
      computed: false,
      description: "token embeddings",
      category: "embedding",
    },
  ];
  for (let layer = 0; layer < 3; layer += 1) {
    list.push(
      {
        name: `blocks.${layer}.hook_resid_pre`,
        module: `transformer.h.${layer}`,
        kind: "input",
        layer,
        shape: ["batch", "seq", 768],
        computed: false,
        description: "residual stream before the block",
        category: "residual",
      },
      {
        name: `blocks.${layer}.attn.hook_z`,
        module: `transformer.h.${layer}.attn.c_proj`,
        kind: "input",
        layer,
        shape: ["batch", "seq", 12, 64],
        computed: true,
        description: "attention heads output",
        category: "attention",
      },
      {
        name: `blocks.${layer}.hook_mlp_out`,
        module: `transformer.h.${layer}.mlp`,
        kind: "output",
        layer,
        shape: ["batch", "seq", 768],
        computed: false,
        description: "MLP output",
        category: "mlp",
      },
    );
  }
  list.push({
    name: "ln_final.hook_normalized",
    module: "transformer.ln_f",
    kind: "output",
    layer: null,
    shape: ["batch", "seq", 768],
    computed: false,
    description: "final norm",
    category: "norm",
  });
  return list;
}
