import "./lab-shims.js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Widget } from "@lumino/widgets";
import { RestModel } from "../lab/model.ts";
import { OPEN_MIME, OpenRenderer } from "../lab/open.ts";
import { ModelPage } from "../lab/page.ts";
import { button } from "./dom.js";
import { architecture, estimate, hooks, record } from "./fixtures.js";
import { FakeSocket, fakeServer } from "./lab-fakes.js";

const routes = () => ({
  "GET models": [200, { models: [record()] }],
  "GET models/m1": [200, record()],
  "GET models/m1/estimate": [200, estimate()],
  "GET models/m1/architecture": [200, architecture()],
  "GET models/m1/hooks": [200, hooks()],
});

let page;

beforeEach(() => {
  FakeSocket.instances = [];
});

afterEach(() => {
  page?.dispose();
});

describe("model page tab", () => {
  it("loads when shown, is titled by the entry, and inserts the picked hooks' code", async () => {
    const inserted = [];
    const list = new RestModel(fakeServer(routes()).settings);
    const copied = [];
    page = new ModelPage({
      list,
      id: "m1",
      insert: async (code) => inserted.push(code),
      copy: (code) => copied.push(code),
    });
    Widget.attach(page, document.body);
    const node = page.node;
    await vi.waitFor(() => expect(node.querySelectorAll("input[data-hook]")).toHaveLength(hooks().length));
    expect(page.title.label).toBe("google/gemma-2-2b");
    expect(node.querySelectorAll(".mistudio-mem__row")).toHaveLength(3);
    expect(node.querySelector("[aria-label=Parameters] svg")).not.toBeNull();

    node.querySelector('input[data-hook="blocks.1.hook_mlp_out"]').click();
    button(node, "Insert into notebook").click();
    expect(inserted).toHaveLength(1);
    expect(inserted[0]).toContain('ModelManager().load("m1")');
    expect(inserted[0]).toContain('    "blocks.1.hook_mlp_out",');
    expect(inserted[0]).toContain("# Hooks picked in miStudio for google/gemma-2-2b");
    button(node, "Copy code").click();
    expect(copied).toEqual(inserted);
  });
});

describe("%mistudio open output", () => {
  const output = (requested_at) => ({
    data: { [OPEN_MIME]: { id: "m1", name: "tiny/gpt2", repo_id: "tiny/gpt2", requested_at } },
  });

  it("opens the page once when the output is new, and offers a button to open it again", async () => {
    const opened = [];
    const renderer = new OpenRenderer(
      (id) => opened.push(id),
      () => 1000,
    );
    await renderer.renderModel(output(990));
    await renderer.renderModel(output(990)); // the same output rendered again (e.g. a re-attached notebook)
    expect(opened).toEqual(["m1"]);
    button(renderer.node, "Open the model page of tiny/gpt2").click();
    expect(opened).toEqual(["m1", "m1"]);
  });

  it("only links when the output is old (a notebook opened again later)", async () => {
    const opened = [];
    const renderer = new OpenRenderer(
      (id) => opened.push(id),
      () => 10_000,
    );
    await renderer.renderModel(output(1000));
    expect(opened).toEqual([]);
    expect(renderer.node.textContent).toBe("Open the model page of tiny/gpt2");
  });
});
