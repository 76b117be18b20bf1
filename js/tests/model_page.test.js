import { afterEach, describe, expect, it, vi } from "vitest";
import { render } from "../views/model_page.js";
import { filterHooks } from "../views/hook_picker.js";
import { FakeModel } from "./fake-model.js";
import { button, choose, control, facts, mount, type } from "./dom.js";
import { architecture, downloading, estimate, hooks, inUse, record } from "./fixtures.js";

function setup(state = {}, actions = []) {
  const model = new FakeModel({ architecture: architecture(), hooks: hooks(), selected: [], error: null, ...state });
  const root = mount();
  const cleanup = render({ model, el: root, actions });
  return { model, root, cleanup };
}

afterEach(() => vi.useRealTimers());

const shownHooks = (root) => [...root.querySelectorAll(".mistudio-hook__name")].map((n) => n.textContent);
const box = (root, name) => root.querySelector(`input[data-hook="${name}"]`);
const tableRows = (table) =>
  Object.fromEntries(
    [...table.querySelectorAll("tbody tr")].map((tr) => [
      tr.querySelector("th").textContent,
      [...tr.querySelectorAll("td")].map((td) => td.textContent),
    ]),
  );

describe("model page: header, memory, parameters", () => {
  it("has a header with the entry's facts and status, and a live progress bar while downloading", () => {
    const { model, root } = setup({ entry: record() });
    expect(root.querySelector("h2").textContent).toBe("google/gemma-2-2b");
    expect(root.querySelector("header .mistudio-badge").textContent).toBe("ready");
    expect(facts(root.querySelector("header"))).toMatchObject({ Parameters: "2.6B", Size: "1.5 GB" });
    expect(root.querySelector("header [role=progressbar]")).toBeNull();
    model.kernelSet("entry", downloading({ summary: null, params: null }));
    // from the architecture, until the download knows them
    expect(facts(root.querySelector("header"))).toMatchObject({ Parameters: "124M", Hidden: "768", Layers: "12" });
    expect(root.querySelector("h2").textContent).toBe("tiny/gpt2");
    expect(root.querySelector("header [role=progressbar]").getAttribute("aria-valuenow")).toBe("50");
  });

  it("says who has the model loaded, from the `leases` trait", () => {
    const { leases, ...entry } = inUse();
    const { model, root } = setup({ entry, leases });
    const line = root.querySelector("header [role=status]");
    expect(line.textContent).toBe("In use by 1 kernel: alice@gpu1 pid 4242 kernel since 2025-01-02 10:15 UTC");
    model.kernelSet("leases", [...leases, { holder: "bob@cli pid 7 process", created_at: "2025-01-02T11:00:00Z" }]);
    expect(root.querySelector("header [role=status]").textContent).toMatch(/^In use by 2 processes: alice@.*; bob@/);
    model.kernelSet("leases", []);
    expect(root.querySelector("header [role=status]")).toBeNull();
  });

  it("without an entry or an estimate trait (the notebook's viewer of a Hub repo), shows neither", () => {
    const { root } = setup();
    expect(root.querySelector("header")).toBeNull();
    expect(root.querySelector("[aria-label=Memory]")).toBeNull();
    expect(root.querySelector("[aria-label=Parameters]")).not.toBeNull();
  });

  it("shows the memory chart once estimated, and asks again for the context and batch typed", () => {
    vi.useFakeTimers();
    const { model, root } = setup({ estimate: null });
    const memory = root.querySelector("[aria-label=Memory]");
    expect(memory.textContent).toContain("Estimating memory…");
    model.kernelSet("estimate", estimate());
    expect(memory.querySelectorAll(".mistudio-mem__row")).toHaveLength(3);
    expect(memory.querySelector("input[type=radio]")).toBeNull(); // the page shows; only the form chooses
    type(control(root, "Context"), "4096");
    type(control(root, "Batch"), "8");
    vi.advanceTimersByTime(300);
    expect(model.sent).toEqual([{ action: "estimate", context: 4096, batch: 8 }]);
    type(control(root, "Batch"), "0");
    vi.advanceTimersByTime(300);
    expect(model.sent).toHaveLength(1);
    expect(control(root, "Batch").getAttribute("aria-invalid")).toBe("true");
  });

  it("shows the parameters by kind and per block, and the config table", () => {
    const { root } = setup();
    const params = root.querySelector("[aria-label=Parameters]");
    expect(params.querySelector("figcaption").textContent).toBe("Share by kind of 124M parameters");
    expect(params.querySelectorAll(".mistudio-blocks__chart rect")).toHaveLength(14);
    const [config] = root.querySelectorAll(".mistudio-table");
    expect(tableRows(config)).toMatchObject({
      "Hidden size": ["768"],
      Layers: ["12"],
      "Attention heads": ["12"],
      Vocabulary: ["50257"],
      "Context length": ["1024"],
    });
  });

  it("host actions under the picker get the selected hook names, and wait for a selection", () => {
    const onClick = vi.fn();
    const { model, root } = setup({}, [{ label: "Insert into notebook", onClick }]);
    expect(button(root, "Insert into notebook").disabled).toBe(true);
    box(root, "hook_embed").click();
    expect(button(root, "Insert into notebook").disabled).toBe(false);
    button(root, "Insert into notebook").click();
    expect(onClick).toHaveBeenCalledWith(["hook_embed"]);
    model.kernelSet("selected", []);
    expect(button(root, "Insert into notebook").disabled).toBe(true);
  });
});

describe("architecture: config and tree", () => {
  it("renders a collapsible tree with folded layers, classes, counts and parameters", () => {
    const { root } = setup();
    const summaries = [...root.querySelectorAll(".mistudio-tree summary")].map((s) => s.textContent);
    expect(summaries[0]).toBe("modelGPT2LMHeadModel124M");
    const block = [...root.querySelectorAll(".mistudio-tree summary")].find((s) => s.textContent.startsWith("0GPT2"));
    expect(block.querySelector(".mistudio-tree__repeat").textContent).toBe("×12");
    expect(block.querySelector(".mistudio-tree__count").textContent).toBe("7.1M each");
    expect(block.closest("li").title).toBe("transformer.h.0");
    expect(root.querySelector(".mistudio-tree__leaf").textContent).toBe("actNewGELU");
    expect(root.textContent).toContain("[50257, 768] float32 · tied to transformer.wte.weight");
  });

  it("opens the first levels and lets the user expand and collapse", () => {
    const { root } = setup();
    const details = [...root.querySelectorAll(".mistudio-tree details")];
    expect(details[0].open).toBe(true);
    const block = details.find((d) => d.querySelector("summary").textContent.startsWith("0GPT2"));
    expect(block.open).toBe(false);
    block.open = true;
    expect(block.querySelector(".mistudio-tree__leaf")).not.toBeNull();
  });

  it("re-renders on a new architecture, shows loading and errors", () => {
    const { model, root } = setup({ architecture: null });
    expect(root.textContent).toContain("Loading architecture…");
    model.kernelSet("architecture", architecture());
    expect(root.querySelector(".mistudio-tree")).not.toBeNull();
    model.kernelSet("architecture", null);
    model.kernelSet("error", { code: "not_found", message: "no model m9" });
    expect(root.querySelector("[role=alert]").textContent).toBe("not_found: no model m9");
    expect(root.textContent).not.toContain("Loading architecture…");
  });
});

describe("hook picker", () => {
  it("lists every hook with name, module path, kind and shape", () => {
    const { root } = setup();
    expect(shownHooks(root)).toHaveLength(11);
    const row = box(root, "blocks.1.attn.hook_z").closest("label");
    expect(row.querySelector(".mistudio-hook__module").textContent).toBe("transformer.h.1.attn.c_proj (input)");
    expect(row.querySelector(".mistudio-hook__shape").textContent).toBe("[batch, seq, 12, 64]");
    expect(row.title).toBe("attention heads output");
    // long names and paths are cut to their column; the whole text is their tooltip
    expect(row.querySelector(".mistudio-hook__name").title).toBe("blocks.1.attn.hook_z");
    expect(row.querySelector(".mistudio-hook__module").title).toBe("transformer.h.1.attn.c_proj (input)");
    expect(root.textContent).toContain("0 selected · 11 of 11 shown");
  });

  it("filters by layer range", () => {
    const { root } = setup();
    type(control(root, "From layer"), "1");
    type(control(root, "To layer"), "1");
    expect(shownHooks(root)).toEqual(["blocks.1.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.1.hook_mlp_out"]);
    type(control(root, "From layer"), "");
    type(control(root, "To layer"), "");
    expect(shownHooks(root)).toHaveLength(11);
  });

  it("filters by category, kind and text", () => {
    const { root } = setup();
    const category = control(root, "Category");
    expect([...category.options].map((o) => o.value)).toEqual([
      "",
      "residual",
      "attention",
      "mlp",
      "embedding",
      "norm",
    ]);
    choose(category, "mlp");
    expect(shownHooks(root)).toEqual(["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out", "blocks.2.hook_mlp_out"]);
    choose(category, "");
    choose(control(root, "Kind"), "input");
    expect(shownHooks(root)).toHaveLength(6);
    choose(control(root, "Kind"), "");
    type(control(root, "Search"), "FINAL");
    expect(shownHooks(root)).toEqual(["ln_final.hook_normalized"]);
    type(control(root, "Search"), "h.2.mlp");
    expect(shownHooks(root)).toEqual(["blocks.2.hook_mlp_out"]);
  });

  it("filterHooks combines all filters", () => {
    const all = hooks();
    expect(filterHooks(all).length).toBe(11);
    expect(
      filterHooks(all, { from: 2, category: "attention", kind: "input", text: "heads" }).map((h) => h.name),
    ).toEqual(["blocks.2.attn.hook_z"]);
    expect(filterHooks(all, { to: 0 }).map((h) => h.layer)).toEqual([0, 0, 0]);
  });

  it("clicking rows selects hooks; the selection is saved in network order", () => {
    const { model, root } = setup();
    box(root, "blocks.2.hook_mlp_out").closest("label").click();
    box(root, "hook_embed").click();
    box(root, "blocks.0.attn.hook_z").click();
    expect(model.get("selected")).toEqual(["hook_embed", "blocks.0.attn.hook_z", "blocks.2.hook_mlp_out"]);
    expect(model.saves.at(-1)).toEqual({ selected: ["hook_embed", "blocks.0.attn.hook_z", "blocks.2.hook_mlp_out"] });
    expect(model.saves).toHaveLength(3);
    box(root, "hook_embed").click();
    expect(model.saves.at(-1)).toEqual({ selected: ["blocks.0.attn.hook_z", "blocks.2.hook_mlp_out"] });
    expect(root.textContent).toContain("2 selected");
  });

  it("Select all shown adds the visible hooks; Clear selection empties", () => {
    const { model, root } = setup({ selected: ["hook_embed"] });
    choose(control(root, "Category"), "residual");
    button(root, "Select all shown").click();
    expect(model.saves.at(-1)).toEqual({
      selected: ["hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"],
    });
    expect(box(root, "blocks.1.hook_resid_pre").checked).toBe(true);
    button(root, "Clear selection").click();
    expect(model.saves.at(-1)).toEqual({ selected: [] });
    expect(root.querySelectorAll("input[data-hook]:checked")).toHaveLength(0);
  });

  it("follows selection and hook changes from the kernel without losing focus", () => {
    const { model, root } = setup();
    box(root, "hook_embed").focus();
    model.kernelSet("selected", ["hook_embed", "blocks.1.attn.hook_z"]);
    expect(box(root, "blocks.1.attn.hook_z").checked).toBe(true);
    expect(document.activeElement).toBe(box(root, "hook_embed"));
    choose(control(root, "Category"), "norm");
    model.kernelSet(
      "hooks",
      hooks().filter((h) => h.category !== "norm"),
    );
    expect(control(root, "Category").value).toBe("");
    expect(shownHooks(root)).toHaveLength(10);
    expect(control(root, "To layer").max).toBe("2");
  });

  it("rows are keyboard usable: checkbox inside a label", () => {
    const { root } = setup();
    const input = box(root, "hook_embed");
    expect(input.type).toBe("checkbox");
    expect(input.closest("label")).not.toBeNull();
  });

  it("cleanup removes all listeners", () => {
    const { model, cleanup } = setup();
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });
});
