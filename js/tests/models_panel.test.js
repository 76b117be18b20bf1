import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { filterModels, render } from "../views/models_panel.js";
import { FakeModel } from "./fake-model.js";
import { button, choose, control, mount, type } from "./dom.js";
import { architecture, downloading, hooks, record } from "./fixtures.js";

const models = () => [
  record(),
  downloading(),
  record({
    id: "m3",
    name: "tiny/llama",
    repo_id: "tiny/llama",
    family: "llama",
    model_type: "llama",
    params: 8_030_261_248,
    quantization: "bnb-8bit",
    status: "failed",
  }),
];

function setup(state = {}, hosts = {}) {
  const model = new FakeModel({
    models: models(),
    filters: {},
    error: null,
    preview: null,
    record: null,
    architecture: null,
    hooks: [],
    selected: [],
    estimate: null,
    ...state,
  });
  const root = mount();
  const cleanup = render({ model, el: root, ...hosts });
  return { model, root, cleanup };
}

const names = (root) => [...root.querySelectorAll(".mistudio-list h3")].map((h) => h.textContent);
const card = (root, id) => root.querySelector(`[data-id="${id}"]`);

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("filterModels", () => {
  it("filters by family, quantization, status, params range and text", () => {
    const all = models();
    const ids = (f) => filterModels(all, f).map((m) => m.id);
    expect(ids({})).toEqual(["m1", "m2", "m3"]);
    expect(ids({ family: "llama" })).toEqual(["m3"]);
    expect(ids({ quantization: "none" })).toEqual(["m2"]);
    expect(ids({ status: "ready" })).toEqual(["m1"]);
    expect(ids({ min_params: 1e9 })).toEqual(["m1", "m3"]);
    expect(ids({ max_params: 2_614_341_888 })).toEqual(["m1", "m2"]);
    expect(ids({ min_params: 1e9, max_params: 5e9 })).toEqual(["m1"]);
    expect(ids({ text: "GEMMA" })).toEqual(["m1"]);
    expect(ids({ text: "tiny/", status: "failed" })).toEqual(["m3"]);
  });

  it("keeps models without a parameter count out of a bounded range", () => {
    const all = [record({ params: null })];
    expect(filterModels(all, { min_params: 1 })).toEqual([]);
    expect(filterModels(all, { max_params: 1e12 })).toEqual([]);
    expect(filterModels(all, {})).toHaveLength(1);
  });
});

describe("models panel", () => {
  it("renders a card per model, with count", () => {
    const { root } = setup();
    expect(names(root)).toEqual(["google/gemma-2-2b", "tiny/gpt2", "tiny/llama"]);
    expect(root.textContent).toContain("3 of 3 models");
    expect(card(root, "m2").querySelector("[role=progressbar]")).not.toBeNull();
  });

  it("says how to start when there are no models", () => {
    const { root } = setup({ models: [] });
    expect(root.textContent).toContain("No models yet: use Download to add one.");
  });

  it("re-renders on model updates and keeps focus on the same button", () => {
    const { model, root } = setup();
    button(card(root, "m2"), "Cancel download").focus();
    model.kernelSet("models", [record(), downloading({ progress: 0.9 })]);
    expect(names(root)).toEqual(["google/gemma-2-2b", "tiny/gpt2"]);
    expect(card(root, "m2").querySelector("[role=progressbar]").getAttribute("aria-valuenow")).toBe("90");
    expect(document.activeElement.dataset.focus).toBe("m2:cancel");
  });

  it("filter inputs filter the cards and save trait `filters`", () => {
    const { model, root } = setup();
    const family = control(root, "Family");
    expect([...family.options].map((o) => o.value)).toEqual(["", "gemma2", "gpt2", "llama"]);
    choose(family, "llama");
    expect(names(root)).toEqual(["tiny/llama"]);
    expect(model.saves.at(-1)).toEqual({
      filters: { text: "", family: "llama", quantization: "", status: "", min_params: null, max_params: null },
    });
    choose(family, "");
    type(control(root, "Min params (B)"), "1");
    type(control(root, "Max params (B)"), "3");
    expect(names(root)).toEqual(["google/gemma-2-2b"]);
    expect(model.get("filters")).toMatchObject({ min_params: 1e9, max_params: 3e9 });
    type(control(root, "Min params (B)"), "");
    type(control(root, "Max params (B)"), "");
    choose(control(root, "Quantization"), "none");
    expect(names(root)).toEqual(["tiny/gpt2"]);
    choose(control(root, "Quantization"), "");
    choose(control(root, "Status"), "failed");
    expect(names(root)).toEqual(["tiny/llama"]);
    choose(control(root, "Status"), "");
    type(control(root, "Search"), "gpt");
    expect(names(root)).toEqual(["tiny/gpt2"]);
    expect(root.textContent).toContain("1 of 3 models");
    expect(model.saves).toHaveLength(11);
  });

  it("applies filters set by the kernel to the inputs and the rows, unfolding the filters", () => {
    const { model, root } = setup({ filters: { status: "ready", min_params: 2_500_000_000 } });
    expect(names(root)).toEqual(["google/gemma-2-2b"]);
    expect(root.querySelector("details.mistudio-filters").open).toBe(true);
    expect(control(root, "Status").value).toBe("ready");
    expect(control(root, "Min params (B)").value).toBe("2.5");
    model.kernelSet("filters", { family: "llama" });
    expect(control(root, "Family").value).toBe("llama");
    expect(control(root, "Status").value).toBe("");
    expect(names(root)).toEqual(["tiny/llama"]);
  });

  it("card buttons send their messages", () => {
    const { model, root } = setup();
    button(card(root, "m2"), "Cancel download").click();
    button(card(root, "m3"), "Resume").click();
    expect(model.sent).toEqual([
      { action: "cancel", id: "m2" },
      { action: "resume", id: "m3" },
    ]);
  });

  it("Delete asks to confirm, across updates; Keep returns; Delete sends", () => {
    const { model, root } = setup();
    button(card(root, "m1"), "Delete").click();
    expect(card(root, "m1").querySelector(".mistudio-confirm").textContent).toContain("free up to 1.5 GB");
    expect(document.activeElement.textContent).toBe("Keep");
    model.kernelSet("models", models());
    expect(document.activeElement.textContent).toBe("Keep");
    button(card(root, "m1"), "Keep").click();
    expect(card(root, "m1").querySelector(".mistudio-confirm")).toBeNull();
    expect(document.activeElement.dataset.focus).toBe("m1:ask-delete");
    button(card(root, "m1"), "Delete").click();
    button(card(root, "m1"), "Delete").click();
    expect(model.sent).toEqual([{ action: "delete", id: "m1" }]);
    expect(card(root, "m1").querySelector(".mistudio-confirm")).toBeNull();
  });

  it("Download opens the download form in place and toggles it", () => {
    const { model, root } = setup();
    const download = button(root, "Download…");
    expect(download.getAttribute("aria-expanded")).toBe("false");
    download.click();
    expect(download.getAttribute("aria-expanded")).toBe("true");
    const repo = control(root, "Hugging Face repo id");
    expect(document.activeElement).toBe(repo);
    type(repo, "tiny/gpt2");
    vi.advanceTimersByTime(400);
    expect(model.sent).toEqual([{ action: "preview", repo_id: "tiny/gpt2", revision: "main" }]);
    download.click();
    expect(root.querySelector("form")).toBeNull();
    expect(document.activeElement).toBe(download);
  });

  it("offers Download and the rows' actions only as trait `can` allows, and follows its changes", () => {
    const { model, root } = setup({ can: ["read"] });
    expect(button(root, "Download…").hidden).toBe(true);
    expect(card(root, "m3").querySelectorAll("button")).toHaveLength(1); // Open
    model.kernelSet("can", ["read", "download", "delete"]);
    expect(button(root, "Download…").hidden).toBe(false);
    button(card(root, "m3"), "Resume").click();
    expect(model.sent).toEqual([{ action: "resume", id: "m3" }]);
  });

  it("the form's Cancel closes it", () => {
    const { root } = setup();
    button(root, "Download…").click();
    button(root, "Cancel").click();
    expect(root.querySelector("form")).toBeNull();
    expect(button(root, "Download…").getAttribute("aria-expanded")).toBe("false");
  });

  it("Open sends the request and opens the model page with memory, parameters and the hook picker", () => {
    const { model, root } = setup();
    button(card(root, "m1"), "Open").click();
    expect(model.sent).toEqual([{ action: "architecture", id: "m1" }]);
    expect(root.querySelector("[aria-label='Model google/gemma-2-2b'] h3").textContent).toBe("google/gemma-2-2b");
    expect(root.textContent).toContain("Loading architecture…");
    expect(root.textContent).toContain("Estimating memory…");
    model.kernelSet("architecture", architecture());
    model.kernelSet("hooks", hooks());
    root.querySelector('input[data-hook="hook_embed"]').click();
    expect(model.saves.at(-1)).toEqual({ selected: ["hook_embed"] });
    button(root, "Close").click();
    expect(root.querySelector(".mistudio-picker")).toBeNull();
    expect(document.activeElement.dataset.focus).toBe("m1:architecture");
  });

  it("a host with places of its own opens the form and the pages there, not in the panel", () => {
    const onDownload = vi.fn();
    const onOpen = vi.fn();
    const { model, root } = setup({}, { onDownload, onOpen });
    expect(button(root, "Download…").hasAttribute("aria-expanded")).toBe(false);
    button(root, "Download…").click();
    expect(onDownload).toHaveBeenCalledOnce();
    button(card(root, "m1"), "Open").click();
    expect(onOpen).toHaveBeenCalledWith(expect.objectContaining({ id: "m1" }));
    expect(root.querySelector("form, .mistudio-picker")).toBeNull();
    expect(model.sent).toEqual([]);
  });

  it("folds the filters away until asked", () => {
    const { root } = setup();
    const filters = root.querySelector("details.mistudio-filters");
    expect(filters.open).toBe(false);
    expect(filters.querySelector("summary").textContent).toBe("Filters");
    expect(filters.querySelector("[role=search]")).not.toBeNull();
  });

  it("shows `error` itself only while no form or viewer is open", () => {
    const { model, root } = setup();
    model.kernelSet("error", { code: "conflict", message: "still downloading" });
    expect(root.querySelectorAll("[role=alert]")).toHaveLength(1);
    button(root, "Download…").click();
    expect(root.querySelectorAll("[role=alert]")).toHaveLength(1);
    expect(root.querySelector("form [role=alert]")).not.toBeNull();
  });

  it("cleanup removes every listener, including the open form's", () => {
    const { model, root, cleanup } = setup();
    button(root, "Download…").click();
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });
});
