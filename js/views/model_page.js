// The model page: what a model is, whether it fits this machine, where its parameters are, its module
// tree and its hook points. It is JupyterLab's main-area model tab, the notebook's architecture viewer,
// and the models panel's opened model: one view over the same traits.
import { architectureSection } from "./architecture.js";
import { modelFacts } from "./card.js";
import { render as renderPicker } from "./hook_picker.js";
import { memoryChart } from "./memory.js";
import { parametersSection } from "./parameters.js";
import { ACTIVE, progressDetails } from "./progress.js";
import { debounce, el, errorLine, field, keepFocus, statusBadge, watch } from "./util.js";

const ESTIMATE_DELAY_MS = 300;
const MAX_CONTEXT = 10_000_000;
const MAX_BATCH = 4096;

/** The entry's header; what the record lacks before its download (dimensions, parameters) comes from
 * the architecture's summary. */
function header(entry, architecture, team, leases) {
  const summary = architecture?.summary;
  const facts = summary
    ? { ...entry, params: entry.params ?? summary.params, summary: entry.summary ?? summary }
    : entry;
  return el(
    "header",
    { class: "mistudio-page__header" },
    el(
      "div",
      { class: "mistudio-card__header" },
      el("h2", { class: "mistudio-truncate", title: entry.name }, entry.name),
      statusBadge(entry.status),
    ),
    entry.repo_id !== entry.name || entry.revision !== "main"
      ? el("p", { class: "mistudio-muted mistudio-truncate" }, `${entry.repo_id}@${entry.revision}`)
      : null,
    modelFacts(facts, { team }),
    inUseLine(leases),
    ACTIVE.has(entry.status) || entry.error ? progressDetails(entry) : null,
  );
}

/** `2025-01-02 10:15 UTC` */
const utcMinute = (iso) => `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;

/** Who has the model loaded (the entry's live leases): deleting it is refused while anyone does. */
function inUseLine(leases) {
  if (!leases?.length) return null;
  const kernels = leases.every((lease) => lease.holder.endsWith(" kernel"));
  const [one, many] = kernels ? ["kernel", "kernels"] : ["process", "processes"];
  const noun = leases.length === 1 ? one : many;
  const holders = leases.map((lease) => `${lease.holder} since ${utcMinute(lease.created_at)}`).join("; ");
  return el("p", { class: "mistudio-inuse", role: "status" }, `In use by ${leases.length} ${noun}: ${holders}`);
}

/** A whole number in [min, max], or null for anything else (the input then shows as invalid). */
function count(input, min, max) {
  const value = Number(input.value);
  const ok = input.value !== "" && Number.isInteger(value) && value >= min && value <= max;
  input.setAttribute("aria-invalid", String(!ok));
  return ok ? value : null;
}

function memorySection(model) {
  const context = el("input", { type: "number", min: "0", max: String(MAX_CONTEXT), step: "1", value: "0" });
  const batch = el("input", { type: "number", min: "1", max: String(MAX_BATCH), step: "1", value: "1" });
  const chart = el("div", { "aria-live": "polite" });
  const ask = debounce(() => {
    const tokens = count(context, 0, MAX_CONTEXT);
    const sequences = count(batch, 1, MAX_BATCH);
    if (tokens != null && sequences != null) model.send({ action: "estimate", context: tokens, batch: sequences });
  }, ESTIMATE_DELAY_MS);
  for (const input of [context, batch]) input.addEventListener("input", ask);
  const update = () => {
    const estimate = model.get("estimate");
    chart.replaceChildren(
      estimate
        ? memoryChart(estimate, { title: "Estimate per load option" })
        : el("p", { class: "mistudio-muted" }, "Estimating memory…"),
    );
  };
  const section = el(
    "section",
    { class: "mistudio-page__memory", "aria-label": "Memory" },
    el("h3", {}, "Memory"),
    el("div", { class: "mistudio-row" }, field("Context (tokens of KV cache)", context), field("Batch", batch)),
    chart,
  );
  update();
  const unwatch = watch(model, ["estimate"], update);
  return { section, cleanup: () => (ask.cancel(), unwatch()) };
}

function hookActions(model, actions) {
  const buttons = actions.map(({ label, onClick }) =>
    el(
      "button",
      {
        type: "button",
        class: "mistudio-button mistudio-button--primary",
        "data-focus": `action:${label}`,
        onclick: () => onClick(model.get("selected") ?? []),
      },
      label,
    ),
  );
  const update = () => {
    for (const button of buttons) button.disabled = !(model.get("selected") ?? []).length;
  };
  update();
  return { row: buttons.length ? el("div", { class: "mistudio-actions" }, buttons) : null, update };
}

/**
 * Traits read: `entry` (the API's Model JSON, for the header; absent or null: no header), `leases` (the
 * `leases` of `GET /models/{id}`: who has the model loaded; absent or empty: not in use), `estimate` (the
 * API's Estimate JSON; absent: no memory section), `architecture` (the API's Architecture JSON | null),
 * `error`, and the hook picker's `hooks` and `selected` (which it writes and saves). Messages sent:
 * `{action: "estimate", context, batch}` when the user changes the context or batch of the estimate.
 * `actions` (optional): `[{label, onClick(selectedNames)}]`, buttons under the hook picker, enabled while
 * hooks are selected (JupyterLab's "Insert into notebook" and "Copy").
 * @param {{ model: any, el: HTMLElement, actions?: { label: string, onClick: (names: string[]) => void }[] }} options
 */
export function render({ model, el: root, actions = [] }) {
  const head = el("div");
  const status = el("div");
  const params = el("div");
  const arch = el("div");
  const picker = el("div");
  const memory = model.get("estimate") === undefined ? null : memorySection(model);
  const { row: actionRow, update: updateActions } = hookActions(model, actions);

  function updateHead() {
    const entry = model.get("entry");
    const shown = entry
      ? [header(entry, model.get("architecture"), Boolean(model.get("team")), model.get("leases"))]
      : [];
    keepFocus(head, () => head.replaceChildren(...shown));
  }

  function update() {
    const architecture = model.get("architecture");
    const error = model.get("error");
    status.replaceChildren(...(error ? [errorLine(error, { role: "alert" })] : []));
    const placeholder = error ? [] : [el("p", { class: "mistudio-muted" }, "Loading architecture…")];
    params.replaceChildren(...(architecture ? [parametersSection(architecture)] : placeholder));
    arch.replaceChildren(...(architecture ? [architectureSection(architecture)] : []));
  }

  root.classList.add("mistudio", "mistudio-page");
  root.replaceChildren(...[head, status, memory?.section, params, arch, picker, actionRow].filter(Boolean));
  updateHead();
  update();
  const cleanups = [
    renderPicker({ model, el: picker }),
    watch(model, ["architecture", "error"], update),
    watch(model, ["entry", "architecture", "leases"], updateHead),
    watch(model, ["selected"], updateActions),
  ];
  if (memory) cleanups.push(memory.cleanup);
  return () => cleanups.forEach((cleanup) => cleanup());
}
