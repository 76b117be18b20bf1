// Download progress: a bar with bytes, speed, ETA and current file, bound to the `record` trait.
import { ACTIVE_STATUSES, RESUMABLE_STATUSES } from "./options.js";
import {
  el,
  errorLine,
  formatBytes,
  formatEta,
  formatSpeed,
  keepFocus,
  progressBar,
  statusBadge,
  watch,
} from "./util.js";

export const ACTIVE = new Set(ACTIVE_STATUSES);
export const RESUMABLE = new Set(RESUMABLE_STATUSES);

/** Whether `can` (the API's `GET /me` list; unknown: null) allows `permission`: read, download, delete. */
export function may(can, permission) {
  return !can || can.includes(permission);
}

/** A button that sends `{action, id}` for a record; `data-focus` lets re-renders keep focus on it. */
export function actionButton(label, action, record, send, attrs = {}) {
  return el(
    "button",
    {
      type: "button",
      class: "mistudio-button",
      "data-focus": `${record.id}:${action}`,
      onclick: () => send({ action, id: record.id }),
      ...attrs,
    },
    label,
  );
}

function fraction(record) {
  if (record.status === "ready") return 1;
  if (record.progress != null) return record.progress;
  return record.bytes_total ? record.bytes_done / record.bytes_total : 0;
}

function stats(record) {
  const parts = [`${formatBytes(record.bytes_done ?? 0)} of ${formatBytes(record.bytes_total)}`];
  parts.push(`${Math.round(fraction(record) * 100)}%`);
  if (record.status === "downloading") {
    parts.push(formatSpeed(record.speed_bps), `ETA ${formatEta(record.eta_s)}`);
    if (record.connections > 1) parts.push(`${record.connections} connections`);
  }
  return parts.join(" · ");
}

/** Bar, stats line, current file, error and note of a record (the download form's progress, the model page's header). */
export function progressDetails(record) {
  return el(
    "div",
    { class: "mistudio-progress" },
    progressBar(fraction(record), `Download of ${record.name}`),
    el("p", { class: "mistudio-progress__stats" }, stats(record)),
    record.current_file && ACTIVE.has(record.status)
      ? el("p", { class: "mistudio-progress__file" }, "File: ", el("code", {}, record.current_file))
      : null,
    errorLine(record.error),
    record.note ? el("p", { class: "mistudio-note mistudio-muted", role: "status" }, record.note) : null,
  );
}

/** "17% · 102 KB/s · ETA 5s": the short stats of a row of the model list (the bytes are in its tooltip). */
function shortStats(record) {
  const parts = [`${Math.round(fraction(record) * 100)}%`];
  if (record.status === "downloading") parts.push(formatSpeed(record.speed_bps), `ETA ${formatEta(record.eta_s)}`);
  return parts.join(" · ");
}

/** A thin bar and a short line of stats, for a row of the model list. */
export function compactProgress(record) {
  return el(
    "div",
    { class: "mistudio-progress mistudio-progress--compact" },
    progressBar(fraction(record), `Download of ${record.name}`),
    el("p", { class: "mistudio-progress__stats", title: stats(record) }, shortStats(record)),
    errorLine(record.error, { class: "mistudio-error mistudio-truncate", title: record.error?.message }),
  );
}

/** Cancel (while active) or Resume (once stopped), when `can` allows downloading; nulls otherwise. */
export function downloadActions(record, send, can = null) {
  const downloading = may(can, "download");
  return [
    downloading && ACTIVE.has(record.status) ? actionButton("Cancel download", "cancel", record, send) : null,
    downloading && RESUMABLE.has(record.status) ? actionButton("Resume", "resume", record, send) : null,
  ];
}

/** The whole progress block: name, status, details, Cancel / Resume when `can` allows downloading. */
export function progressBlock(record, send, can = null) {
  return el(
    "section",
    { class: "mistudio-card", "aria-label": `Download of ${record.name}` },
    el("header", { class: "mistudio-card__header" }, el("h3", {}, record.name), statusBadge(record.status)),
    progressDetails(record),
    el("div", { class: "mistudio-actions" }, ...downloadActions(record, send, can)),
  );
}

/** Render the record in trait `record` (null: nothing yet); buttons send cancel/resume, as trait `can` allows. */
export function render({ model, el: root }) {
  const send = (msg) => model.send(msg);
  const update = () =>
    keepFocus(root, () => {
      const record = model.get("record");
      root.replaceChildren(...(record ? [progressBlock(record, send, model.get("can"))] : []));
    });
  root.classList.add("mistudio");
  update();
  return watch(model, ["record", "can"], update);
}
