// Small DOM and formatting helpers shared by every view.

/**
 * Build an element: el("button", { class: "x", onclick: fn, "aria-pressed": "true" }, "text", child).
 * Keys starting with "on" become listeners; `false`/`null`/`undefined` attributes and children are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Build an SVG element: svg("rect", { x: "10%", width: "5%" }, child); attributes are set as given. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null && value !== false) node.setAttribute(key, value);
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

/** `part` as a percentage of `whole`, clamped to 0..100 and rounded to 0.01 (for SVG and CSS lengths). */
export function percent(part, whole) {
  const value = whole > 0 ? (part / whole) * 100 : 0;
  return Math.round(Math.min(Math.max(value, 0), 100) * 100) / 100;
}

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

/**
 * 141_107_412_992 -> "141 GB", 1536 -> "1.54 KB": decimal units (1 GB = 10^9 bytes, as the Hub prints them),
 * three significant digits, rounded half up. The same rule and arithmetic as mistudio_jupyter/core/units.py;
 * both are tested against tests/format_bytes.json.
 */
export function formatBytes(bytes) {
  if (bytes == null || !Number.isFinite(bytes)) return "—";
  const magnitude = Math.abs(bytes);
  let unit = 0;
  while (magnitude >= 1000 ** (unit + 1) && unit < BYTE_UNITS.length - 1) unit += 1;
  let text = roundedBytes(magnitude / 1000 ** unit, unit);
  if (Number(text) >= 1000 && unit < BYTE_UNITS.length - 1) {
    unit += 1; // 999.6 KB rounds up to the next unit
    text = roundedBytes(magnitude / 1000 ** unit, unit);
  }
  return `${bytes < 0 ? "-" : ""}${text} ${BYTE_UNITS[unit]}`;
}

function roundedBytes(scaled, unit) {
  const decimals = unit === 0 || scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2;
  const text = (Math.floor(scaled * 10 ** decimals + 0.5) / 10 ** decimals).toFixed(decimals);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/** 2_614_341_888 -> "2.6B", 124_439_808 -> "124M". */
export function formatParams(n) {
  if (n == null || !Number.isFinite(n)) return "—";
  for (const [size, suffix] of [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ]) {
    if (n >= size) {
      const value = n / size;
      return `${value >= 100 ? value.toFixed(0) : Number(value.toFixed(1))}${suffix}`;
    }
  }
  return String(n);
}

/** 125 -> "2m 05s", 3725 -> "1h 02m". */
export function formatEta(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  const pad = (v) => String(v).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

export function formatSpeed(bps) {
  return bps == null ? "—" : `${formatBytes(bps)}/s`;
}

/** Subscribe `callback` to changes of the named traits; returns the unsubscribe function. */
export function watch(model, names, callback) {
  for (const name of names) model.on(`change:${name}`, callback);
  return () => {
    for (const name of names) model.off(`change:${name}`, callback);
  };
}

/**
 * Run `update` (which rebuilds part of `root`) and give focus back to the element with the same
 * `data-focus` key, so periodic progress updates do not steal keyboard focus.
 */
export function keepFocus(root, update) {
  const active = root.ownerDocument.activeElement;
  const key = root.contains(active) ? active.dataset.focus : undefined;
  update();
  if (key) focusByKey(root, key);
}

/** Focus the element under `root` whose `data-focus` is `key`, if there is one. */
export function focusByKey(root, key) {
  [...root.querySelectorAll("[data-focus]")].find((n) => n.dataset.focus === key)?.focus();
}

/** Set a node's text only when it changes, so live regions do not repeat themselves. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function debounce(fn, ms) {
  let timer;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** A labelled form control: <label>text <control></label>. */
export function field(text, control) {
  return el("label", { class: "mistudio-field" }, el("span", {}, text), control);
}

/** <option> elements for [value, label] pairs. */
export function optionElements(pairs) {
  return pairs.map(([value, label]) => el("option", { value }, label));
}

/** A <select> over [value, label] pairs with `value` chosen. */
export function select(pairs, value, attrs = {}) {
  const node = el("select", attrs, optionElements(pairs));
  node.value = value;
  return node;
}

export function statusBadge(status) {
  return el("span", { class: `mistudio-badge mistudio-badge--${status}` }, status);
}

export function errorLine(error, attrs = {}) {
  return error ? el("p", { class: "mistudio-error", ...attrs }, `${error.code}: ${error.message}`) : null;
}

/** A progress bar; `fraction` in 0..1. */
export function progressBar(fraction, label) {
  const pct = Math.round(Math.min(Math.max(fraction ?? 0, 0), 1) * 100);
  return el(
    "div",
    {
      class: "mistudio-bar",
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(pct),
    },
    el("div", { class: "mistudio-bar__fill", style: `width: ${pct}%` }),
  );
}

/**
 * A table: `head` labels the columns, each row is [row header, ...cells] (null shows as "—"), and
 * `rowAttrs(index)` (optional) gives each <tr> its attributes.
 */
export function dataTable(caption, head, rows, rowAttrs = () => ({})) {
  return el(
    "table",
    { class: "mistudio-table" },
    caption ? el("caption", {}, caption) : null,
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        head.map((h) => el("th", { scope: "col" }, h)),
      ),
    ),
    el(
      "tbody",
      {},
      rows.map(([k, ...cells], i) =>
        el(
          "tr",
          rowAttrs(i),
          el("th", { scope: "row" }, k),
          cells.map((c) => el("td", {}, String(c ?? "—"))),
        ),
      ),
    ),
  );
}
