// Where the parameters are: the share of each kind (embedding, attention, MLP, norm, output head) as one
// stacked SVG bar with a legend that states the numbers, and the parameters of every block in network
// order (embeddings, each layer, final norm, head) as a column chart.
import { el, formatParams, percent, svg } from "./util.js";

/** Kinds of parameters as the architecture summary's `params_by_type` names them: [key, label]. */
export const KINDS = [
  ["embedding", "Embedding"],
  ["attention", "Attention"],
  ["mlp", "MLP"],
  ["norm", "Norm"],
  ["lm_head", "Output head"],
  ["other", "Other"],
];

const isIndex = (name) => /^\d+$/.test(name);
const hasLayers = (node) => (node.children ?? []).some((c) => isIndex(c.name) || hasLayers(c));

/** The share of each kind, in KINDS order, with the segment's place in percent of the bar. */
export function kindShares(summary) {
  const counts = summary?.params_by_type ?? {};
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  let start = 0;
  return KINDS.filter(([key]) => counts[key] > 0).map(([key, label]) => {
    const share = { key, label, count: counts[key], share: counts[key] / total, x: percent(start, total) };
    start += counts[key];
    share.width = percent(counts[key], total);
    return share;
  });
}

function partKind(node) {
  if (node.name === "lm_head" || node.path.endsWith(".lm_head")) return "lm_head";
  if (/embed/i.test(node.class_name)) return "embedding";
  if (/norm/i.test(node.class_name)) return "norm";
  return "other";
}

/**
 * The blocks of a module tree in network order, each `{label, path, params, kind}` (`kind` "layer" for
 * each entry of the layer list, folded layers unfolded again); modules without parameters are left out.
 */
export function blockParts(tree) {
  const parts = [];
  const walk = (node) => {
    const children = node.children ?? [];
    if (children.some((c) => isIndex(c.name))) {
      let index = 0;
      for (const child of children)
        for (let r = 0; r < (child.repeated ?? 1); r += 1, index += 1)
          parts.push({
            label: `layer ${index}`,
            path: `${node.path}.${index}`,
            params: child.total_params,
            kind: "layer",
          });
    } else if (node === tree || hasLayers(node)) {
      if (node.own_params)
        parts.push({ label: node.name || "model", path: node.path, params: node.own_params, kind: "other" });
      children.forEach(walk);
    } else {
      parts.push({ label: node.name, path: node.path, params: node.total_params, kind: partKind(node) });
    }
  };
  walk(tree);
  return parts.filter((p) => p.params > 0);
}

/** Columns for the parts, in percent of the chart: x and width by position, height by parameters. */
export function blockColumns(parts) {
  const max = Math.max(...parts.map((p) => p.params), 1);
  const slot = parts.length ? 100 / parts.length : 0;
  return parts.map((part, i) => {
    const height = percent(part.params, max);
    return {
      ...part,
      x: Math.round(i * slot * 100) / 100,
      width: Math.round(slot * 0.8 * 100) / 100,
      height,
      y: Math.round((100 - height) * 100) / 100,
    };
  });
}

/** "embedding 38.6M, layers 0–11 7.1M each, ln_f 1.5K": runs of equal layers said once. */
function partsText(parts) {
  const runs = [];
  for (const part of parts) {
    const last = runs.at(-1);
    if (last && part.kind === "layer" && last.kind === "layer" && last.params === part.params) last.to = part;
    else runs.push({ ...part, from: part, to: part });
  }
  return runs
    .map((r) =>
      r.from === r.to
        ? `${r.label} ${formatParams(r.params)}`
        : `${r.from.label}–${r.to.label.replace("layer ", "")} ${formatParams(r.params)} each`,
    )
    .join(", ");
}

/** The share of each kind of `summary`'s parameters (`{params, params_by_type}`), or null without counts. */
export function kindChart(summary) {
  const shares = kindShares(summary);
  if (!shares.length) return null;
  const text = shares.map((s) => `${s.label} ${formatParams(s.count)} (${(s.share * 100).toFixed(1)}%)`).join(", ");
  return el(
    "figure",
    { class: "mistudio-chart" },
    el("figcaption", {}, `Share by kind of ${formatParams(summary.params)} parameters`),
    svg(
      "svg",
      { class: "mistudio-kinds__chart", width: "100%", height: 16, role: "img", "aria-label": text },
      svg("title", {}, text),
      shares.map((s) =>
        svg("rect", {
          class: `mistudio-kind mistudio-kind--${s.key}`,
          "data-kind": s.key,
          x: `${s.x}%`,
          y: 2,
          width: `${s.width}%`,
          height: 12,
        }),
      ),
    ),
    el(
      "ul",
      { class: "mistudio-kinds" },
      shares.map((s) =>
        el(
          "li",
          { "data-kind": s.key },
          el("span", { class: `mistudio-swatch mistudio-kind--${s.key}` }),
          el("span", { class: "mistudio-kinds__label" }, s.label),
          el("span", { class: "mistudio-kinds__count" }, formatParams(s.count)),
          el("span", { class: "mistudio-kinds__share" }, `${(s.share * 100).toFixed(1)}%`),
        ),
      ),
    ),
  );
}

function blockChart(tree) {
  const columns = blockColumns(blockParts(tree));
  if (!columns.length) return null;
  const text = partsText(columns);
  const max = Math.max(...columns.map((c) => c.params));
  return el(
    "figure",
    { class: "mistudio-chart" },
    el("figcaption", {}, "Parameters per block, in network order"),
    el(
      "div",
      { class: "mistudio-blocks" },
      el("span", { class: "mistudio-blocks__max" }, formatParams(max)),
      svg(
        "svg",
        { class: "mistudio-blocks__chart", width: "100%", height: 64, role: "img", "aria-label": text },
        svg("title", {}, text),
        columns.map((c) =>
          svg(
            "rect",
            {
              class: `mistudio-block mistudio-block--${c.kind}`,
              "data-path": c.path,
              x: `${c.x}%`,
              y: `${c.y}%`,
              width: `${c.width}%`,
              height: `${c.height}%`,
            },
            svg("title", {}, `${c.label}: ${formatParams(c.params)}`),
          ),
        ),
      ),
    ),
    el(
      "div",
      { class: "mistudio-blocks__axis" },
      el("span", { title: columns[0].path }, columns[0].label),
      el("span", { title: columns.at(-1).path }, columns.at(-1).label),
    ),
  );
}

/** The Parameters section of an architecture (the API's Architecture JSON). */
export function parametersSection(architecture) {
  const summary = architecture.summary ?? {};
  return el(
    "section",
    { class: "mistudio-params", "aria-label": "Parameters" },
    el("h3", {}, "Parameters"),
    kindChart(summary),
    architecture.tree ? blockChart(architecture.tree) : null,
  );
}
