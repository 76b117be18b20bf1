// A model in the list: a compact row (name, status, size, a thin progress bar while downloading,
// actions), and the facts of a model that the model page shows in its header.
import { ACTIVE, actionButton, compactProgress, downloadActions, may } from "./progress.js";
import { el, formatBytes, formatParams, statusBadge } from "./util.js";

function quantizationText(record) {
  const q = record.quantization === "none" ? "none" : record.quantization;
  return record.dtype && record.dtype !== "auto" ? `${q} (${record.dtype})` : q;
}

/** Parameters, hidden size, layers, quantization and size of a catalog entry; with `team` (a team
 * store's catalog), also who asked for it. */
export function modelFacts(record, { team = false } = {}) {
  const summary = record.summary ?? {};
  const rows = [
    ["Parameters", formatParams(record.params)],
    ["Hidden", summary.hidden_size ?? "—"],
    ["Layers", summary.num_layers ?? "—"],
    ["Quantization", quantizationText(record)],
    ["Size", formatBytes(record.size_bytes ?? record.bytes_total)],
    ...(team && record.requested_by ? [["Requested by", record.requested_by]] : []),
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

function actions(record, send, setConfirming, can) {
  return el(
    "div",
    { class: "mistudio-actions mistudio-item__actions" },
    actionButton("Open", "architecture", record, send),
    ...downloadActions(record, send, can),
    ACTIVE.has(record.status) || !may(can, "delete")
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

// The figures, then in a team's catalog who asked for the model: a long name is cut short (whole in its
// tooltip), the figures never.
function meta(record, team) {
  const size = record.size_bytes ?? record.bytes_total;
  const figures = [formatParams(record.params), quantizationText(record), size == null ? null : formatBytes(size)]
    .filter((part) => part && part !== "—")
    .join(" · ");
  const requester = team ? record.requested_by : null;
  return [
    el("span", { class: "mistudio-item__figures" }, figures),
    requester
      ? el(
          "span",
          { class: "mistudio-item__requester mistudio-truncate", title: `requested by ${requester}` },
          `${figures ? " · " : ""}by ${requester}`,
        )
      : null,
  ];
}

/**
 * One row (`team`: the catalog is a team store's, whose rows name who asked). `send(msg)` receives `{action, id}` for architecture (the Open button)/delete/cancel/resume;
 * Delete first asks for confirmation, whose state the caller keeps (`confirming`, `setConfirming`).
 * Only the actions that `can` (the API's `GET /me` list; null: unknown) allows are shown.
 */
export function modelRow(record, { send, confirming = false, setConfirming, team = false, can = null }) {
  const origin = record.repo_id !== record.name ? ` (${record.repo_id}@${record.revision})` : "";
  return el(
    "article",
    { class: "mistudio-item", "aria-label": record.name, "data-id": record.id },
    el(
      "div",
      { class: "mistudio-item__main" },
      el("h3", { class: "mistudio-item__name mistudio-truncate", title: `${record.name}${origin}` }, record.name),
      statusBadge(record.status),
    ),
    el("p", { class: "mistudio-item__meta mistudio-muted" }, meta(record, team)),
    ACTIVE.has(record.status) || record.error ? compactProgress(record) : null,
    confirming ? confirmDelete(record, send, setConfirming) : actions(record, send, setConfirming, can),
  );
}
