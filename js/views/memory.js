// Memory of every load option as horizontal SVG bars against this machine's GPU memory and RAM: each bar
// split into weights / quantization state / overhead / KV cache, coloured by the fit verdict, with the
// free GPU memory and the available RAM drawn as capacity lines across every bar.
import { LOAD_OPTIONS } from "./options.js";
import { dataTable, el, formatBytes, percent, svg } from "./util.js";

const VERDICTS = { gpu: "fits on GPU", cpu: "fits in RAM only", none: "does not fit" };

/** The fill of a bar by its verdict: JupyterLab's success / warning / error colours. */
export const FIT_COLOURS = { gpu: "var(--mistudio-ok)", cpu: "var(--mistudio-warn)", none: "var(--mistudio-err)" };

/** The parts of a bar, left to right: [field of the MemoryLine, key, label]. */
export const SEGMENTS = [
  ["weights_bytes", "weights", "Weights"],
  ["quant_state_bytes", "quant", "Quantization state"],
  ["overhead_bytes", "overhead", "Per-process overhead"],
  ["kv_cache_bytes", "kv", "KV cache"],
];

/** The GPU with the most free memory, or null on a machine without one. */
export function bestGpu(system) {
  const gpus = system?.gpus ?? [];
  return gpus.reduce((best, g) => (!best || g.free_bytes > best.free_bytes ? g : best), null);
}

/**
 * The load options (core/options.py: name, label, on_entry) the estimate has lines for, in that order.
 * Options a catalog entry cannot record (double quant, chosen when loading) are shown but not offered.
 */
export function availableOptions(estimate) {
  return LOAD_OPTIONS.filter((o) => estimate.memory?.[o.name]);
}

/** The first option an entry can record that fits a GPU, else RAM, else the smallest one. */
export function defaultOption(estimate) {
  const offered = availableOptions(estimate).filter((o) => o.on_entry);
  const fit = (verdict) => offered.find((o) => estimate.fit?.[o.name]?.verdict === verdict);
  return (fit("gpu") ?? fit("cpu") ?? offered.at(-1))?.name ?? null;
}

/**
 * Where everything goes, in percent of the chart's width: one scale for every bar (the largest of the
 * totals, the loading peaks, the GPU's and the RAM's size), the capacity lines (free memory of the
 * emptiest GPU, available RAM), and per option its segments, its loading peak and its verdict.
 * `estimate` is the API's Estimate (or Preview) JSON: `{memory, fit, system}`.
 */
export function memoryGeometry(estimate) {
  const options = availableOptions(estimate);
  const gpu = bestGpu(estimate.system);
  const ram = estimate.system?.ram;
  const scale = Math.max(
    ...options.flatMap((o) => [estimate.memory[o.name].total_bytes, estimate.memory[o.name].peak_load_bytes ?? 0]),
    gpu?.total_bytes ?? 0,
    ram?.total_bytes ?? 0,
    1,
  );
  const line = (bytes) => (bytes == null ? null : { bytes, x: percent(bytes, scale) });
  const rows = options.map((option) => {
    const memory = estimate.memory[option.name];
    let start = 0;
    const segments = SEGMENTS.map(([field, key, label]) => {
      const bytes = memory[field] ?? 0;
      const segment = { key, label, bytes, x: percent(start, scale), width: percent(bytes, scale) };
      start += bytes;
      return segment;
    });
    return {
      option,
      memory,
      verdict: estimate.fit?.[option.name]?.verdict ?? "none",
      width: percent(memory.total_bytes, scale),
      peak: line(memory.peak_load_bytes),
      segments,
    };
  });
  return { scale, gpu, ram, capacity: { gpu: line(gpu?.free_bytes), ram: line(ram?.available_bytes) }, rows };
}

function capacityText({ gpu, ram }) {
  return [
    gpu
      ? `GPU ${gpu.index} ${gpu.name}: ${formatBytes(gpu.free_bytes)} free of ${formatBytes(gpu.total_bytes)}`
      : "No GPU",
    ram ? `RAM: ${formatBytes(ram.available_bytes)} available of ${formatBytes(ram.total_bytes)}` : null,
  ].filter(Boolean);
}

function legend(geometry) {
  const [gpuText, ramText] = capacityText(geometry);
  const swatch = (key, label) =>
    el(
      "span",
      { class: "mistudio-legend__item" },
      el("span", { class: `mistudio-swatch mistudio-swatch--${key}` }),
      label,
    );
  return el(
    "div",
    { class: "mistudio-legend" },
    el("span", { class: `mistudio-legend__item${geometry.gpu ? " mistudio-legend__gpu" : ""}` }, gpuText),
    ramText ? el("span", { class: "mistudio-legend__item mistudio-legend__ram" }, ramText) : null,
    el("span", { class: "mistudio-legend__item mistudio-legend__peak" }, "peak while loading"),
    SEGMENTS.map(([, key, label]) => swatch(key, label)),
  );
}

function barText(row, geometry) {
  const parts = row.segments.filter((s) => s.bytes).map((s) => `${s.label.toLowerCase()} ${formatBytes(s.bytes)}`);
  return [
    `${row.option.label}: ${formatBytes(row.memory.total_bytes)} (${parts.join(", ")}), ${VERDICTS[row.verdict]}`,
    ...capacityText(geometry),
  ].join("; ");
}

/** One bar: track, segments, loading peak and the capacity lines, with its numbers as the text alternative. */
export function memoryBar(row, geometry) {
  const text = barText(row, geometry);
  const { gpu, ram } = geometry.capacity;
  const vertical = (kind, line) =>
    line
      ? svg("line", {
          class: `mistudio-mem__cap mistudio-mem__cap--${kind}`,
          x1: `${line.x}%`,
          x2: `${line.x}%`,
          y1: 0,
          y2: 16,
        })
      : null;
  return svg(
    "svg",
    { class: "mistudio-mem__chart", width: "100%", height: 16, role: "img", "aria-label": text },
    svg("title", {}, text),
    svg("rect", { class: "mistudio-mem__track", x: 0, y: 3, width: "100%", height: 10, rx: 2 }),
    row.segments
      .filter((s) => s.width > 0)
      .map((s) =>
        svg("rect", {
          class: `mistudio-mem__seg mistudio-mem__seg--${s.key}`,
          "data-segment": s.key,
          x: `${s.x}%`,
          y: 3,
          width: `${s.width}%`,
          height: 10,
          style: `fill: ${FIT_COLOURS[row.verdict]}`,
        }),
      ),
    row.peak && row.peak.bytes > row.memory.total_bytes
      ? svg("line", { class: "mistudio-mem__peak", x1: `${row.peak.x}%`, x2: `${row.peak.x}%`, y1: 4, y2: 12 })
      : null,
    vertical("gpu", gpu),
    vertical("ram", ram),
  );
}

function breakdownTable(geometry) {
  const head = ["Option", ...SEGMENTS.map(([, , label]) => label), "Total", "Peak while loading", "Fit"];
  return el(
    "details",
    { class: "mistudio-breakdown" },
    el("summary", {}, "Breakdown of every option"),
    el(
      "div",
      { class: "mistudio-scroll" },
      dataTable(
        null,
        head,
        geometry.rows.map((row) => [
          row.option.label,
          ...row.segments.map((s) => formatBytes(s.bytes)),
          formatBytes(row.memory.total_bytes),
          formatBytes(row.memory.peak_load_bytes),
          VERDICTS[row.verdict],
        ]),
        (i) => ({ "data-option": geometry.rows[i].option.name }),
      ),
    ),
  );
}

let charts = 0; // each chart's radios are their own group, however many forms a page shows

function optionRow(row, geometry, chosen, onChoose, group) {
  const { option } = row;
  const label = option.on_entry || !onChoose ? option.label : `${option.label}, chosen when loading`;
  const radio = onChoose
    ? el("input", {
        type: "radio",
        name: group,
        value: option.name,
        checked: option.name === chosen,
        disabled: !option.on_entry,
        "data-focus": `option:${option.name}`,
        onchange: () => onChoose(option.name),
      })
    : null;
  const classes = ["mistudio-mem__row", `mistudio-fit--${row.verdict}`];
  if (onChoose && !option.on_entry) classes.push("mistudio-mem__row--estimate");
  if (option.name === chosen) classes.push("mistudio-mem__row--chosen");
  return el(
    onChoose ? "label" : "div",
    { class: classes.join(" "), "data-option": option.name },
    el(
      "span",
      { class: "mistudio-mem__head" },
      radio,
      el("span", { class: "mistudio-mem__label", title: label }, label),
      el("span", { class: "mistudio-mem__total" }, formatBytes(row.memory.total_bytes)),
      el("span", { class: `mistudio-verdict mistudio-verdict--${row.verdict}` }, VERDICTS[row.verdict]),
    ),
    memoryBar(row, geometry),
  );
}

/**
 * The memory chart of an estimate (the API's Estimate or Preview JSON). With `onChoose`, each option is
 * a radio (`chosen` checked) and `onChoose(name)` is called on selection; without, the chart only shows.
 */
export function memoryChart(estimate, { chosen = null, onChoose = null, title = "Memory estimate" } = {}) {
  const geometry = memoryGeometry(estimate);
  charts += 1;
  const group = `mistudio-load-option-${charts}`;
  return el(
    "fieldset",
    { class: "mistudio-mem" },
    el("legend", {}, title),
    legend(geometry),
    geometry.rows.map((row) => optionRow(row, geometry, chosen, onChoose, group)),
    breakdownTable(geometry),
  );
}
