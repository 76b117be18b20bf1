// Memory options of a preview as bars against this machine's GPU and RAM, with the fit verdict.
import { LOAD_OPTIONS } from "./options.js";
import { el, formatBytes } from "./util.js";

const VERDICTS = { gpu: "fits on GPU", cpu: "fits in RAM only", none: "does not fit" };

/** The GPU with the most free memory, or null on a machine without one. */
export function bestGpu(system) {
  const gpus = system?.gpus ?? [];
  return gpus.reduce((best, g) => (!best || g.free_bytes > best.free_bytes ? g : best), null);
}

/**
 * The load options (core/options.py: name, label, on_entry) the preview has estimates for, in that order.
 * Options a catalog entry cannot record (double quant, chosen when loading) are shown but not offered.
 */
export function availableOptions(preview) {
  return LOAD_OPTIONS.filter((o) => preview.memory?.[o.name]);
}

/** The first option an entry can record that fits a GPU, else RAM, else the smallest one. */
export function defaultOption(preview) {
  const offered = availableOptions(preview).filter((o) => o.on_entry);
  const fit = (verdict) => offered.find((o) => preview.fit?.[o.name]?.verdict === verdict);
  return (fit("gpu") ?? fit("cpu") ?? offered.at(-1))?.name ?? null;
}

function machineLine(system) {
  const gpu = bestGpu(system);
  const ram = system?.ram;
  return el(
    "p",
    { class: "mistudio-legend" },
    el(
      "span",
      { class: "mistudio-legend__gpu" },
      gpu
        ? `GPU ${gpu.index} ${gpu.name}: ${formatBytes(gpu.free_bytes)} free of ${formatBytes(gpu.total_bytes)}`
        : "No GPU",
    ),
    ram
      ? el(
          "span",
          { class: "mistudio-legend__ram" },
          `RAM: ${formatBytes(ram.available_bytes)} available of ${formatBytes(ram.total_bytes)}`,
        )
      : null,
  );
}

function bar(total, scale, gpu, ram, verdict) {
  const pct = (bytes) => `${Math.min((bytes / scale) * 100, 100).toFixed(1)}%`;
  return el(
    "div",
    { class: "mistudio-mem__track", "aria-hidden": "true" },
    el("div", { class: `mistudio-mem__fill mistudio-mem__fill--${verdict}`, style: `width: ${pct(total)}` }),
    gpu
      ? el("div", { class: "mistudio-mem__mark mistudio-mem__mark--gpu", style: `left: ${pct(gpu.free_bytes)}` })
      : null,
    ram
      ? el("div", { class: "mistudio-mem__mark mistudio-mem__mark--ram", style: `left: ${pct(ram.available_bytes)}` })
      : null,
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
    el(
      "dl",
      { class: "mistudio-facts" },
      rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, formatBytes(v)))),
    ),
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
  const scale = Math.max(
    ...options.map((o) => preview.memory[o.name].total_bytes),
    gpu?.total_bytes ?? 0,
    ram?.total_bytes ?? 0,
    1,
  );
  const rows = options.map((o) => {
    const memory = preview.memory[o.name];
    const verdict = preview.fit?.[o.name]?.verdict ?? "none";
    return el(
      "label",
      { class: `mistudio-mem__row${o.on_entry ? "" : " mistudio-mem__row--estimate"}`, "data-option": o.name },
      el("input", {
        type: "radio",
        name: "mistudio-quantization",
        value: o.name,
        checked: o.name === chosen,
        disabled: !o.on_entry,
        "data-focus": `option:${o.name}`,
        onchange: () => onChoose(o.name),
      }),
      el("span", { class: "mistudio-mem__label" }, o.on_entry ? o.label : `${o.label}, chosen when loading`),
      bar(memory.total_bytes, scale, gpu, ram, verdict),
      el("span", { class: "mistudio-mem__total" }, formatBytes(memory.total_bytes)),
      el("span", { class: `mistudio-verdict mistudio-verdict--${verdict}` }, VERDICTS[verdict]),
    );
  });
  const selected = options.find((o) => o.name === chosen);
  return el(
    "fieldset",
    { class: "mistudio-mem" },
    el("legend", {}, "Load as (memory estimate)"),
    machineLine(preview.system),
    rows,
    selected ? breakdown(preview.memory[selected.name], selected) : null,
  );
}
