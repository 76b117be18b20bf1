import "./lab-shims.js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Widget } from "@lumino/widgets";
import { RestModel } from "../lab/model.ts";
import { MiStudioSidebar } from "../lab/sidebar.ts";
import { button, buttonTexts } from "./dom.js";
import { architecture, hooks, record } from "./fixtures.js";
import { FakeSocket, fakeServer } from "./lab-fakes.js";

let sidebar;
let inserted;

function attach(routes) {
  const server = fakeServer(routes);
  inserted = 0;
  sidebar = new MiStudioSidebar({ model: new RestModel(server.settings), onInsert: () => (inserted += 1) });
  Widget.attach(sidebar, document.body);
  return { server, node: sidebar.node };
}

beforeEach(() => {
  FakeSocket.instances = [];
});

afterEach(() => {
  sidebar.dispose();
});

describe("MiStudioSidebar", () => {
  it("says how to install and enable the server extension when it is missing, and retries", async () => {
    const routes = {};
    const { node } = attach(routes);
    await vi.waitFor(() => expect(node.textContent).toContain("miStudio is unavailable"));
    expect(node.querySelector("pre").textContent).toBe(
      "pip install mistudio-jupyter\njupyter server extension enable mistudio_jupyter",
    );
    expect(node.querySelector("[role=alert]").textContent).toContain("no_extension");

    routes["GET models"] = [200, { models: [record()] }];
    button(node, "Retry").click();
    await vi.waitFor(() => expect(node.querySelector(".mistudio-card")).not.toBeNull());
    expect(node.textContent).not.toContain("unavailable");
  });

  it("renders the shared models panel, shows a lost connection, and offers to insert picked hooks", async () => {
    const { node } = attach({
      "GET models": [200, { models: [record()] }],
      "GET models/m1/architecture": [200, architecture()],
      "GET models/m1/hooks": [200, hooks()],
    });
    await vi.waitFor(() => expect(node.querySelector(".mistudio-card")).not.toBeNull());
    expect(node.querySelector("h2").textContent).toBe("Models");
    const footer = node.querySelector(".mistudio-lab-sidebar__footer");
    expect(footer.hidden).toBe(true);

    FakeSocket.last.open();
    FakeSocket.last.drop();
    expect(node.querySelector(".mistudio-lab-sidebar__banner").textContent).toBe("Live updates lost: reconnecting…");

    button(node, "Architecture").click();
    await vi.waitFor(() => expect(node.querySelectorAll("input[data-hook]")).toHaveLength(hooks().length));
    for (const name of ["blocks.0.hook_resid_pre", "blocks.2.hook_mlp_out"]) {
      node.querySelector(`input[data-hook="${name}"]`).click();
    }
    expect(footer.hidden).toBe(false);
    expect(buttonTexts(footer)).toEqual(["Insert 2 hooks of google/gemma-2-2b into notebook"]);
    button(footer, "Insert 2 hooks of google/gemma-2-2b into notebook").click();
    expect(inserted).toBe(1);
  });
});
