// Download form: repo id → live preview, memory per option with fit verdict, token, start,
// and the progress of the started download (trait `record`).
import { availableOptions, defaultOption, memoryChart } from "./memory.js";
import { kindChart } from "./parameters.js";
import { progressBlock } from "./progress.js";
import { debounce, el, errorLine, field, formatBytes, formatParams, keepFocus, watch } from "./util.js";

const PREVIEW_DELAY_MS = 400;

function gatedText(gated) {
  if (!gated) return "no";
  return gated === true ? "yes" : `yes (${gated})`;
}

function previewFacts(p) {
  const rows = [
    ["Family", p.model_type && p.model_type !== p.family ? `${p.family} (${p.model_type})` : p.family],
    ["Parameters", formatParams(p.params)],
    ["Hidden size", p.hidden_size],
    ["Layers", p.num_layers],
    ["Heads", p.num_kv_heads && p.num_kv_heads !== p.num_heads ? `${p.num_heads} (${p.num_kv_heads} KV)` : p.num_heads],
    ["Vocabulary", p.vocab_size],
    ["Context", p.context_length],
    ["Download", formatBytes(p.download_bytes)],
    ["Gated", gatedText(p.gated)],
    ["License", p.license],
    ["Hook table", p.capabilities?.hook_table],
  ];
  return el(
    "dl",
    { class: "mistudio-facts" },
    rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v == null || v === "" ? "—" : String(v)))),
  );
}

function previewSection(p, chosen, onChoose) {
  return el(
    "section",
    { class: "mistudio-preview", "aria-label": `Preview of ${p.repo_id}` },
    el(
      "h3",
      {},
      p.repo_id,
      el("span", { class: "mistudio-muted" }, ` @ ${p.revision}${p.commit ? ` (${p.commit.slice(0, 7)})` : ""}`),
    ),
    previewFacts(p),
    kindChart(p),
    p.warnings?.length
      ? el(
          "ul",
          { class: "mistudio-warnings" },
          p.warnings.map((w) => el("li", {}, w)),
        )
      : null,
    memoryChart(p, { chosen, onChoose, title: "Load as (memory estimate)" }),
  );
}

/**
 * Traits read: `preview` (the API's Preview JSON), `error` ({code, message} | null), `record` (the API's Model JSON).
 * Messages sent: `{action: "preview", repo_id, revision}` (debounced) and
 * `{action: "download", repo_id, revision, option, token}` (`option`: a load option's name, as the memory
 * table names it). The token lives only in the
 * password input and that one message; it is never set on a trait. `onClose` (optional) is called by Cancel.
 */
export function render({ model, el: root, onClose }) {
  const state = { chosen: null, pending: false, lastSent: null };
  const repo = el("input", {
    type: "text",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "e.g. google/gemma-2-2b",
  });
  const revision = el("input", { type: "text", value: "main", autocomplete: "off", spellcheck: "false" });
  const token = el("input", { type: "password", autocomplete: "off", placeholder: "hf_…" });
  const status = el("div", { class: "mistudio-status", "aria-live": "polite" });
  const previewSlot = el("div");
  const progressSlot = el("div");
  const start = el(
    "button",
    { type: "button", class: "mistudio-button mistudio-button--primary", onclick: () => startDownload() },
    "Start download",
  );
  const cancel = el("button", { type: "button", class: "mistudio-button", onclick: () => reset() }, "Cancel");

  const request = () => ({ repo_id: repo.value.trim(), revision: revision.value.trim() || "main" });
  const current = () => {
    const p = model.get("preview");
    const r = request();
    return p && p.repo_id === r.repo_id && p.revision === r.revision ? p : null;
  };
  const chosenOption = (p) => {
    const offered = availableOptions(p).filter((o) => o.on_entry);
    return offered.find((o) => o.name === state.chosen) ?? offered.find((o) => o.name === defaultOption(p));
  };

  function sendPreview() {
    const r = request();
    const key = `${r.repo_id}@${r.revision}`;
    if (!r.repo_id || key === state.lastSent) return;
    state.lastSent = key;
    state.pending = true;
    model.send({ action: "preview", ...r });
    update();
  }
  const sendPreviewSoon = debounce(sendPreview, PREVIEW_DELAY_MS);

  function startDownload() {
    const p = current();
    const option = p && chosenOption(p);
    if (!option) return;
    model.send({ action: "download", ...request(), option: option.name, token: token.value || null });
    token.value = "";
  }

  function reset() {
    sendPreviewSoon.cancel();
    repo.value = "";
    revision.value = "main";
    token.value = "";
    Object.assign(state, { chosen: null, pending: false });
    update();
    onClose?.();
  }

  function choose(key) {
    state.chosen = key;
    update();
  }

  function update() {
    const p = current();
    const option = p && chosenOption(p);
    const error = model.get("error");
    const waiting = state.pending && !p;
    status.replaceChildren(
      ...(waiting ? [el("p", { class: "mistudio-muted" }, "Fetching preview…")] : []),
      ...(!waiting && error ? [errorLine(error, { role: "alert" })] : []),
    );
    keepFocus(previewSlot, () => previewSlot.replaceChildren(...(p ? [previewSection(p, option?.name, choose)] : [])));
    token.closest("label").classList.toggle("mistudio-field--needed", Boolean(p?.gated));
    start.disabled = !option;
  }

  function updateProgress() {
    const record = model.get("record");
    keepFocus(progressSlot, () =>
      progressSlot.replaceChildren(
        ...(record ? [progressBlock(record, (msg) => model.send(msg), model.get("can"))] : []),
      ),
    );
  }

  function replied() {
    state.pending = false;
    update();
  }

  function previewNow(event) {
    event.preventDefault();
    sendPreviewSoon.cancel();
    sendPreview();
  }

  function edited() {
    update();
    sendPreviewSoon();
  }

  repo.addEventListener("input", edited);
  revision.addEventListener("input", edited);
  const form = el(
    "form",
    { class: "mistudio-form", "aria-label": "Download a model", onsubmit: previewNow },
    el("div", { class: "mistudio-row" }, field("Hugging Face repo id", repo), field("Revision", revision)),
    status,
    previewSlot,
    field("Hugging Face token (gated or private repos; sent once with Start, never stored)", token),
    el("div", { class: "mistudio-actions" }, start, cancel),
    progressSlot,
  );
  root.classList.add("mistudio");
  root.replaceChildren(form);
  update();
  updateProgress();
  const unwatch = [watch(model, ["preview", "error"], replied), watch(model, ["record"], updateProgress)];
  return () => {
    sendPreviewSoon.cancel();
    unwatch.forEach((off) => off());
  };
}
