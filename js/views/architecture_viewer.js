// Architecture viewer: architecture section plus the hook picker, over one model.
import { architectureSection } from "./architecture.js";
import { render as renderPicker } from "./hook_picker.js";
import { el, errorLine, watch } from "./util.js";

/**
 * Traits read: `architecture` (the API's Architecture JSON | null), `error` ({code, message} | null), and the
 * hook picker's `hooks` and `selected` (which it writes and saves).
 */
export function render({ model, el: root }) {
  const status = el("div");
  const body = el("div");
  const picker = el("div");

  function update() {
    const architecture = model.get("architecture");
    const error = model.get("error");
    status.replaceChildren(...(error ? [errorLine(error, { role: "alert" })] : []));
    const placeholder = error ? [] : [el("p", { class: "mistudio-muted" }, "Loading architecture…")];
    body.replaceChildren(...(architecture ? [architectureSection(architecture)] : placeholder));
  }

  root.classList.add("mistudio");
  root.replaceChildren(status, body, picker);
  update();
  const cleanups = [renderPicker({ model, el: picker }), watch(model, ["architecture", "error"], update)];
  return () => cleanups.forEach((cleanup) => cleanup());
}
