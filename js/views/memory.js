// Memory options of a preview as bars against this machine's GPU and RAM, with the fit verdict.
import { el, formatBytes } from "./util.js";

/** Every memory option of a preview, and how it is loaded (null: an estimate the catalog cannot load as). */
export const OPTIONS = [
  { key: "fp32", label: "fp32", load: { quantization: "none", dtype: "float32" } },
  { key: "fp16", label: "fp16", load: { quantization: "none", dtype: "float16" } },
  { key: "bf16", label: "bf16", load: { quantization: "none", dtype: "bfloat16" } },
  { key: "bnb-8bit", label: "8-bit (bnb)", load: { quantization: "bnb-8bit", dtype: "auto" } },
  { key: "bnb-4bit", label: "4-bit (bnb)", load: { quantization: "bnb-4bit", dtype: "auto" } },
  { key: "bnb-4bit-dq", label: "4-bit, double quant (estimate only)", load: null },
];

const VERDICTS = { gpu: "fits on GPU", cpu: "fits in RAM only", none: "does not fit" };

/** The GPU with the most free memory, or null on a machine without one. */
export function bestGpu(system) {
  const gpus = system?.gpus ?? [];
  return gpus.reduce((best, g) => (!best || g.free_bytes > best.free_bytes ? g : best), null);
}

/** The options the preview has estimates for, in OPTIONS order. */
export function availableOptions(preview) {
  return OPTIONS.filter((o) => preview.memory?.[o.key]);
}

/** The first loadable option that fits a GPU, else RAM, else the smallest one. */
export function defaultOption(preview) {
  const loadable = availableOptions(preview).filter((o) => o.load);
  const fit = (verdict) => loadable.find((o) => preview.fit?.[o.key]?.verdict === verdict);
  return (fit("gpu") ?? fit("cpu") ?? loadable.at(-1))?.key ?? null;
}

function machineLine(system) {
  const gpu = bestGpu(system);
  const ram = system?.ram;
  return el(
    "p",
    { class: "mistudio-legend" },
    el("span", { class: "mistudio-legend__gpu" }, gpu ? `GPU ${gpu.index} ${gpu.name}: ${formatBytes(gpu.free_bytes)} free of ${formatBytes(gpu.total_bytes)}` : "No GPU"),
    ram ? el("span", { class: "mistudio-legend__ram" }, `RAM: ${formatBytes(ram.available_bytes)} available of ${formatBytes(ram.total_bytes)}`) : null,
  );
}

function bar(total, scale, gpu, ram, verdict) {
  const pct = (bytes) => `${Math.min((bytes / scale) * 100, 100).toFixed(1)}%`;
  return el(
    "div",
    { class: "mistudio-mem__track", "aria-hidden": "true" },
    el("div", { class: `mistudio-mem__fill mistudio-mem__fill--${verdict}`, style: `width: ${pct(total)}` }),
    gpu ? el("div", { class: "mistudio-mem__mark mistudio-mem__mark--gpu", style: `left: ${pct(gpu.free_bytes)}` }) : null,
    ram ? el("div", { class: "mistudio-mem__mark mistudio-mem__mark--ram", style: `left: ${pct(ram.available_bytes)}` }) : null,
  );
}

function breakdown(memory, option) {
  const rows = [
    ["Weights", memory.weights_bytes],
    ["Quantization state", memory.quant_state_bytes],
    ["Per-process overhead", memory.overhead_bytes],
    ["KV cache", memory.kv_cache_bytes],
    ["Total", memory.total_bytes],
    ["Peak while loading", memory.peak_load_bytes],
  ];
  return el(
    "details",
    { class: "mistudio-breakdown" },
    el("summary", {}, `Breakdown for ${option.label}`),
    el("dl", { class: "mistudio-facts" }, rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, formatBytes(v))))),
  );
}

/**
 * A radio group with one row per memory option: bar (scaled to the largest of the options, GPU and RAM,
 * with markers at free GPU memory and available RAM), total, and verdict. `onChoose(key)` on selection.
 */
export function memoryOptions(preview, chosen, onChoose) {
  const options = availableOptions(preview);
  const gpu = bestGpu(preview.system);
  const ram = preview.system?.ram;
  const scale = Math.max(...options.map((o) => preview.memory[o.key].total_bytes), gpu?.total_bytes ?? 0, ram?.total_bytes ?? 0, 1);
  const rows = options.map((o) => {
    const memory = preview.memory[o.key];
    const verdict = preview.fit?.[o.key]?.verdict ?? "none";
    return el(
      "label",
      { class: `mistudio-mem__row${o.load ? "" : " mistudio-mem__row--estimate"}`, "data-option": o.key },
      el("input", {
        type: "radio",
        name: "mistudio-quantization",
        value: o.key,
        checked: o.key === chosen,
        disabled: !o.load,
        "data-focus": `option:${o.key}`,
        onchange: () => onChoose(o.key),
      }),
      el("span", { class: "mistudio-mem__label" }, o.label),
      bar(memory.total_bytes, scale, gpu, ram, verdict),
      el("span", { class: "mistudio-mem__total" }, formatBytes(memory.total_bytes)),
      el("span", { class: `mistudio-verdict mistudio-verdict--${verdict}` }, VERDICTS[verdict]),
    );
  });
  const selected = options.find((o) => o.key === chosen);
  return el(
    "fieldset",
    { class: "mistudio-mem" },
    el("legend", {}, "Load as (memory estimate)"),
    machineLine(preview.system),
    rows,
    selected ? breakdown(preview.memory[selected.key], selected) : null,
  );
}
