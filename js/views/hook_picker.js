// Hook picker: filter hook points by layer range, category, kind and text; select with checkboxes;
// the selection (hook names, in network order) is written to trait `selected` and saved.
import { el, field, optionElements, select, setText, watch } from "./util.js";

const CATEGORIES = ["residual", "attention", "mlp", "embedding", "norm", "module"];

const number = (value) => (value === "" || value == null ? null : Number(value));

/** Hooks matching `{from, to, category, kind, text}`; a layer range excludes hooks outside any layer. */
export function filterHooks(hooks, { from = null, to = null, category = "", kind = "", text = "" } = {}) {
  const needle = text.trim().toLowerCase();
  return hooks.filter(
    (h) =>
      (from == null || (h.layer != null && h.layer >= from)) &&
      (to == null || (h.layer != null && h.layer <= to)) &&
      (!category || h.category === category) &&
      (!kind || h.kind === kind) &&
      (!needle || [h.name, h.module, h.description].some((s) => s?.toLowerCase().includes(needle))),
  );
}

const shapeText = (shape) => `[${(shape ?? []).join(", ")}]`;

function hookRow(hook, checked, onToggle) {
  return el(
    "li",
    {},
    el(
      "label",
      { class: "mistudio-hook", title: hook.description },
      el("input", {
        type: "checkbox",
        checked,
        "data-focus": `hook:${hook.name}`,
        "data-hook": hook.name,
        onchange: (e) => onToggle(hook.name, e.target.checked),
      }),
      el("code", { class: "mistudio-hook__name", title: hook.name }, hook.name),
      el(
        "span",
        { class: "mistudio-hook__module", title: `${hook.module} (${hook.kind})` },
        hook.module,
        el("span", { class: "mistudio-muted" }, ` (${hook.kind})`),
      ),
      el("code", { class: "mistudio-hook__shape" }, shapeText(hook.shape)),
    ),
  );
}

/**
 * Traits read: `hooks` (list of the API's HookPoint JSON), `selected` (list of names). Writes `selected` and calls
 * `save_changes()` on every change of the selection.
 */
export function render({ model, el: root }) {
  const from = el("input", { type: "number", min: "0", step: "1", inputmode: "numeric" });
  const to = el("input", { type: "number", min: "0", step: "1", inputmode: "numeric" });
  const category = el("select");
  const kind = select(
    [
      ["", "All"],
      ["input", "input"],
      ["output", "output"],
    ],
    "",
  );
  const text = el("input", { type: "search", placeholder: "name, module or description" });
  const count = el("p", { class: "mistudio-muted", "aria-live": "polite" });
  const list = el("ul", { class: "mistudio-hooks", "aria-label": "Hook points" });
  let visible = [];

  const hooks = () => model.get("hooks") ?? [];
  const selected = () => new Set(model.get("selected") ?? []);

  function save(names) {
    model.set(
      "selected",
      hooks()
        .map((h) => h.name)
        .filter((n) => names.has(n)),
    );
    model.save_changes();
  }

  function toggle(name, on) {
    const names = selected();
    if (on) names.add(name);
    else names.delete(name);
    save(names);
  }

  function syncSelection() {
    const names = selected();
    for (const box of list.querySelectorAll("input[data-hook]")) box.checked = names.has(box.dataset.hook);
    setText(count, `${names.size} selected · ${visible.length} of ${hooks().length} shown`);
  }

  function updateList() {
    visible = filterHooks(hooks(), {
      from: number(from.value),
      to: number(to.value),
      category: category.value,
      kind: kind.value,
      text: text.value,
    });
    const names = selected();
    list.replaceChildren(...visible.map((h) => hookRow(h, names.has(h.name), toggle)));
    syncSelection();
  }

  function updateCategories() {
    const present = new Set(hooks().map((h) => h.category));
    const options = [["", "All"], ...CATEGORIES.filter((c) => present.has(c)).map((c) => [c, c])];
    const current = present.has(category.value) ? category.value : "";
    category.replaceChildren(...optionElements(options));
    category.value = current;
    const layers = hooks()
      .map((h) => h.layer)
      .filter((l) => l != null);
    const max = layers.length ? String(Math.max(...layers)) : "";
    for (const input of [from, to]) input.max = max;
    updateList();
  }

  for (const input of [from, to, text]) input.addEventListener("input", updateList);
  for (const input of [category, kind]) input.addEventListener("change", updateList);

  const unwatch = [watch(model, ["hooks"], updateCategories), watch(model, ["selected"], syncSelection)];
  root.classList.add("mistudio");
  root.replaceChildren(
    el(
      "section",
      { class: "mistudio-picker", "aria-label": "Hook picker" },
      el("h3", {}, "Hook points"),
      el(
        "div",
        { class: "mistudio-row" },
        field("From layer", from),
        field("To layer", to),
        field("Category", category),
        field("Kind", kind),
        field("Search", text),
      ),
      el(
        "div",
        { class: "mistudio-actions" },
        el(
          "button",
          {
            type: "button",
            class: "mistudio-button",
            onclick: () => save(new Set([...selected(), ...visible.map((h) => h.name)])),
          },
          "Select all shown",
        ),
        el("button", { type: "button", class: "mistudio-button", onclick: () => save(new Set()) }, "Clear selection"),
        count,
      ),
      list,
    ),
  );
  updateCategories();
  return () => unwatch.forEach((off) => off());
}
