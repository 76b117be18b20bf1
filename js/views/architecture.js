// Architecture: config table and a collapsible module tree.
import { dataTable, el, formatParams } from "./util.js";

const CONFIG_ROWS = [
  ["hidden_size", "Hidden size"],
  ["num_layers", "Layers"],
  ["num_heads", "Attention heads"],
  ["num_kv_heads", "KV heads"],
  ["head_dim", "Head dim"],
  ["intermediate_size", "MLP size"],
  ["vocab_size", "Vocabulary"],
  ["context_length", "Context length"],
];

export function configTable(summary) {
  return dataTable(
    "Config",
    ["Setting", "Value"],
    CONFIG_ROWS.map(([key, label]) => [label, summary[key]]),
  );
}

function paramList(parameters) {
  return el(
    "ul",
    { class: "mistudio-tree__params" },
    parameters.map((p) =>
      el(
        "li",
        {},
        el("code", {}, p.name),
        ` [${p.shape.join(", ")}] ${p.dtype}`,
        p.tied_to ? ` · tied to ${p.tied_to}` : null,
      ),
    ),
  );
}

function nodeLine(node) {
  const each = node.repeated > 1 ? " each" : "";
  return [
    el("span", { class: "mistudio-tree__name" }, node.name || "model"),
    el("code", { class: "mistudio-tree__class" }, node.class_name),
    node.repeated > 1
      ? el("span", { class: "mistudio-tree__repeat", title: `${node.repeated} identical layers` }, `×${node.repeated}`)
      : null,
    node.total_params
      ? el("span", { class: "mistudio-tree__count" }, `${formatParams(node.total_params)}${each}`)
      : null,
  ];
}

/** One module: a <details> when it has children or parameters, a plain line otherwise. */
export function treeNode(node, depth = 0) {
  const children = node.children ?? [];
  const parameters = node.parameters ?? [];
  if (!children.length && !parameters.length) {
    return el("li", { title: node.path }, el("div", { class: "mistudio-tree__leaf" }, nodeLine(node)));
  }
  return el(
    "li",
    { title: node.path },
    el(
      "details",
      { open: depth < 2 && children.length > 0 },
      el("summary", {}, nodeLine(node)),
      parameters.length ? paramList(parameters) : null,
      children.length
        ? el(
            "ul",
            {},
            children.map((c) => treeNode(c, depth + 1)),
          )
        : null,
    ),
  );
}

/** Config and module tree of an architecture (the API's Architecture JSON). */
export function architectureSection(architecture) {
  return el(
    "section",
    { class: "mistudio-arch", "aria-label": "Architecture" },
    el("h3", {}, "Architecture"),
    el("div", { class: "mistudio-scroll" }, configTable(architecture.summary ?? {})),
    el("h4", {}, "Modules"),
    el("div", { class: "mistudio-scroll" }, el("ul", { class: "mistudio-tree" }, treeNode(architecture.tree))),
  );
}
