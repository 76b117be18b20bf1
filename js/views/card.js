// Model card: metadata, status, progress while downloading, and actions.
import { ACTIVE, RESUMABLE, actionButton, progressDetails } from "./progress.js";
import { el, formatBytes, formatParams, statusBadge } from "./util.js";

function quantizationText(record) {
  const q = record.quantization === "none" ? "none" : record.quantization;
  return record.dtype && record.dtype !== "auto" ? `${q} (${record.dtype})` : q;
}

function facts(record) {
  const summary = record.summary ?? {};
  const rows = [
    ["Parameters", formatParams(record.params)],
    ["Hidden", summary.hidden_size ?? "—"],
    ["Layers", summary.num_layers ?? "—"],
    ["Quantization", quantizationText(record)],
    ["Size", formatBytes(record.size_bytes ?? record.bytes_total)],
  ];
  return el(
    "dl",
    { class: "mistudio-facts" },
    rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, String(v)))),
  );
}

function confirmDelete(record, send, setConfirming) {
  return el(
    "div",
    { class: "mistudio-confirm", role: "group", "aria-label": "Confirm delete" },
    el("span", {}, `Delete ${record.name} and free up to ${formatBytes(record.size_bytes ?? record.bytes_done)}?`),
    actionButton("Delete", "delete", record, send, { class: "mistudio-button mistudio-button--danger" }),
    el(
      "button",
      {
        type: "button",
        class: "mistudio-button",
        "data-focus": `${record.id}:keep`,
        onclick: () => setConfirming(false),
      },
      "Keep",
    ),
  );
}

function actions(record, send, setConfirming) {
  return el(
    "div",
    { class: "mistudio-actions" },
    record.status === "ready" ? actionButton("Architecture", "architecture", record, send) : null,
    ACTIVE.has(record.status) ? actionButton("Cancel download", "cancel", record, send) : null,
    RESUMABLE.has(record.status) ? actionButton("Resume", "resume", record, send) : null,
    ACTIVE.has(record.status)
      ? null
      : el(
          "button",
          {
            type: "button",
            class: "mistudio-button",
            "data-focus": `${record.id}:ask-delete`,
            onclick: () => setConfirming(true),
          },
          "Delete",
        ),
  );
}

/**
 * One card. `send(msg)` receives `{action, id}` for architecture/delete/cancel/resume; Delete first asks
 * for confirmation, whose state the caller keeps (`confirming`, `setConfirming`) across re-renders.
 */
export function modelCard(record, { send, confirming = false, setConfirming }) {
  return el(
    "article",
    { class: "mistudio-card", "aria-label": record.name, "data-id": record.id },
    el("header", { class: "mistudio-card__header" }, el("h3", {}, record.name), statusBadge(record.status)),
    record.repo_id !== record.name
      ? el("p", { class: "mistudio-muted" }, `${record.repo_id}@${record.revision}`)
      : null,
    facts(record),
    ACTIVE.has(record.status) || record.error ? progressDetails(record) : null,
    confirming ? confirmDelete(record, send, setConfirming) : actions(record, send, setConfirming),
  );
}
