// Models panel: the model list (compact rows, filters folded away) and, in a notebook, the download
// form or a model page opened in place. The JupyterLab sidebar renders the same panel and opens both
// in the main area instead (`onDownload`, `onOpen`).
import { modelRow } from "./card.js";
import { render as renderDownload } from "./download_form.js";
import { render as renderModelPage } from "./model_page.js";
import { QUANTIZATIONS, STATUSES } from "./options.js";
import { may } from "./progress.js";
import { el, errorLine, field, focusByKey, keepFocus, optionElements, select, setText, watch } from "./util.js";

const EMPTY_FILTERS = { text: "", family: "", quantization: "", status: "", min_params: null, max_params: null };
const BILLION = 1e9;

/** Records matching the filters (the shape of trait `filters`); params bounds are inclusive. */
export function filterModels(models, filters = {}) {
  const f = { ...EMPTY_FILTERS, ...filters };
  const needle = f.text.trim().toLowerCase();
  return models.filter(
    (m) =>
      (!f.family || m.family === f.family) &&
      (!f.quantization || m.quantization === f.quantization) &&
      (!f.status || m.status === f.status) &&
      (f.min_params == null || (m.params ?? 0) >= f.min_params) &&
      (f.max_params == null || (m.params ?? Infinity) <= f.max_params) &&
      (!needle || [m.name, m.repo_id, m.family, m.model_type].some((s) => s?.toLowerCase().includes(needle))),
  );
}

const pairs = (values) => [["", "All"], ...values.map((v) => [v, v])];
const toCount = (value) => (value === "" ? null : Math.round(Number(value) * BILLION));
const toBillions = (count) => (count == null ? "" : String(count / BILLION));

function filterControls(onInput) {
  const inputs = {
    text: el("input", { type: "search", placeholder: "name or repo" }),
    family: el("select"),
    min_params: el("input", { type: "number", min: "0", step: "any", inputmode: "decimal" }),
    max_params: el("input", { type: "number", min: "0", step: "any", inputmode: "decimal" }),
    quantization: select(pairs(QUANTIZATIONS), ""),
    status: select(pairs(STATUSES), ""),
  };
  for (const input of Object.values(inputs))
    input.addEventListener(input.tagName === "SELECT" ? "change" : "input", onInput);
  const row = el(
    "details",
    { class: "mistudio-filters" },
    el("summary", {}, "Filters"),
    el(
      "div",
      { class: "mistudio-row", role: "search", "aria-label": "Filter models" },
      field("Search", inputs.text),
      field("Family", inputs.family),
      field("Min params (B)", inputs.min_params),
      field("Max params (B)", inputs.max_params),
      field("Quantization", inputs.quantization),
      field("Status", inputs.status),
    ),
  );
  return { inputs, row };
}

/**
 * Traits read: `models` (list of the API's Model JSON), `filters` (written and saved on every filter edit),
 * `error`, `can` (what the user may do: the API's `GET /me`; null shows every action), plus the traits of
 * the download form and model page it opens. Messages sent:
 * `{action: "architecture"|"delete"|"cancel"|"resume", id}` from the rows, and the download form's.
 * A host with a place of its own for them passes `onDownload()` (the Download button) and `onOpen(record)`
 * (a row's Open button); the panel then opens neither in place.
 * @param {{ model: any, el: HTMLElement, onDownload?: (() => void) | null, onOpen?: ((record: any) => void) | null }} options
 */
export function render({ model, el: root, onDownload = null, onOpen = null }) {
  const { inputs, row } = filterControls(saveFilters);
  const download = el(
    "button",
    {
      type: "button",
      class: "mistudio-button mistudio-button--primary",
      "aria-expanded": onDownload ? null : "false",
      onclick: toggleDownload,
    },
    "Download…",
  );
  const detail = el("div", { class: "mistudio-detail" });
  const error = el("div");
  const count = el("p", { class: "mistudio-muted", "aria-live": "polite" });
  const list = el("div", { class: "mistudio-list", role: "list" });
  let confirming = null;
  let open = null; // {kind, cleanup, restoreFocus}

  const filters = () => ({ ...EMPTY_FILTERS, ...model.get("filters") });

  function readInputs() {
    const { text, family, quantization, status } = inputs;
    return {
      text: text.value,
      family: family.value,
      quantization: quantization.value,
      status: status.value,
      min_params: toCount(inputs.min_params.value),
      max_params: toCount(inputs.max_params.value),
    };
  }

  function saveFilters() {
    model.set("filters", readInputs());
    model.save_changes();
  }

  function writeInputs() {
    const f = filters();
    const shown = readInputs();
    for (const key of ["text", "family", "quantization", "status"])
      if (shown[key] !== f[key]) inputs[key].value = f[key];
    for (const key of ["min_params", "max_params"]) if (shown[key] !== f[key]) inputs[key].value = toBillions(f[key]);
    if (Object.keys(EMPTY_FILTERS).some((key) => f[key] !== EMPTY_FILTERS[key])) row.open = true; // say why rows are missing
  }

  function updateFamilies() {
    const families = [...new Set([...(model.get("models") ?? []).map((m) => m.family), filters().family])]
      .filter(Boolean)
      .sort();
    inputs.family.replaceChildren(...optionElements(pairs(families)));
    inputs.family.value = filters().family;
  }

  function setConfirming(id) {
    const previous = confirming;
    confirming = id;
    updateList();
    focusByKey(list, id ? `${id}:keep` : `${previous}:ask-delete`);
  }

  function send(msg, record) {
    if (msg.action === "architecture") return onOpen ? onOpen(record) : openModel(record, msg);
    model.send(msg);
    if (msg.action === "delete") setConfirming(null);
  }

  function updateList() {
    const models = model.get("models") ?? [];
    const shown = filterModels(models, filters());
    setText(
      count,
      models.length ? `${shown.length} of ${models.length} models` : "No models yet: use Download to add one.",
    );
    keepFocus(list, () =>
      list.replaceChildren(
        ...shown.map((r) =>
          el(
            "div",
            { role: "listitem" },
            modelRow(r, {
              send: (msg) => send(msg, r),
              confirming: confirming === r.id,
              setConfirming: (on) => setConfirming(on ? r.id : null),
              team: Boolean(model.get("team")),
              can: model.get("can"),
            }),
          ),
        ),
      ),
    );
  }

  function updateError() {
    const value = open ? null : model.get("error");
    error.replaceChildren(...(value ? [errorLine(value, { role: "alert" })] : []));
  }

  function close() {
    if (!open) return;
    const { cleanup, restoreFocus } = open;
    open = null;
    cleanup();
    detail.replaceChildren();
    if (!onDownload) download.setAttribute("aria-expanded", "false");
    updateError();
    restoreFocus();
  }

  function show(kind, section, cleanup, restoreFocus) {
    close();
    open = { kind, cleanup, restoreFocus };
    detail.replaceChildren(section);
    if (!onDownload) download.setAttribute("aria-expanded", String(kind === "download"));
    updateError();
  }

  function toggleDownload() {
    if (onDownload) return onDownload();
    if (open?.kind === "download") return close();
    const body = el("div");
    const cleanup = renderDownload({ model, el: body, onClose: close });
    show(
      "download",
      el(
        "section",
        { class: "mistudio-card", "aria-label": "Download a model" },
        el("h3", {}, "Download a model"),
        body,
      ),
      cleanup,
      () => download.focus(),
    );
    body.querySelector("input")?.focus();
  }

  function openModel(record, msg) {
    model.send(msg);
    const body = el("div");
    const cleanup = renderModelPage({ model, el: body });
    const closeButton = el("button", { type: "button", class: "mistudio-button", onclick: close }, "Close");
    const heading = el("h3", { tabindex: "-1", class: "mistudio-truncate", title: record.name }, record.name);
    const section = el(
      "section",
      { class: "mistudio-card", "aria-label": `Model ${record.name}` },
      el("header", { class: "mistudio-card__header" }, heading, closeButton),
      body,
    );
    show("model", section, cleanup, () => focusByKey(list, `${record.id}:architecture`));
    heading.focus();
  }

  function onFilters() {
    writeInputs();
    updateList();
  }

  function onModels() {
    updateFamilies();
    updateList();
  }

  function onPermissions() {
    download.hidden = !may(model.get("can"), "download");
    updateList();
  }

  root.classList.add("mistudio", "mistudio-panel");
  root.replaceChildren(
    el("header", { class: "mistudio-panel__header" }, el("h2", {}, "Models"), download),
    detail,
    error,
    row,
    count,
    list,
  );
  writeInputs();
  updateFamilies();
  onPermissions();
  updateError();
  const unwatch = [
    watch(model, ["models"], onModels),
    watch(model, ["can"], onPermissions),
    watch(model, ["filters"], onFilters),
    watch(model, ["error"], updateError),
  ];
  return () => {
    open?.cleanup();
    unwatch.forEach((off) => off());
  };
}
