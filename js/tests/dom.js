// Small DOM helpers for the view tests.
export function mount() {
  const root = document.createElement("div");
  document.body.replaceChildren(root);
  return root;
}

export function button(root, text) {
  const found = [...root.querySelectorAll("button")].find((b) => b.textContent === text);
  if (!found) throw new Error(`no button "${text}"`);
  return found;
}

export function buttonTexts(root) {
  return [...root.querySelectorAll("button")].map((b) => b.textContent);
}

/** The control inside the <label> whose text starts with `text`. */
export function control(root, text) {
  const label = [...root.querySelectorAll("label")].find((l) => l.firstChild.textContent.startsWith(text));
  if (!label) throw new Error(`no field "${text}"`);
  return label.querySelector("input, select");
}

export function type(input, value) {
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

export function choose(selectEl, value) {
  selectEl.value = value;
  selectEl.dispatchEvent(new Event("change", { bubbles: true }));
}

export function facts(root) {
  return Object.fromEntries(
    [...root.querySelectorAll(".mistudio-facts > div")].map((d) => [
      d.querySelector("dt").textContent,
      d.querySelector("dd").textContent,
    ]),
  );
}
