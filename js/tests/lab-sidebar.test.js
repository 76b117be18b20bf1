import "./lab-shims.js";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Widget } from "@lumino/widgets";
import { RestModel } from "../lab/model.ts";
import { MiStudioSidebar } from "../lab/sidebar.ts";
import { button } from "./dom.js";
import { record } from "./fixtures.js";
import { FakeSocket, fakeServer } from "./lab-fakes.js";

let sidebar;
let opened;

function attach(routes) {
  const server = fakeServer(routes);
  opened = [];
  sidebar = new MiStudioSidebar({
    model: new RestModel(server.settings),
    openModel: (id) => opened.push(["model", id]),
    openDownload: () => opened.push(["download"]),
  });
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
    await vi.waitFor(() => expect(node.querySelector(".mistudio-item")).not.toBeNull());
    expect(node.textContent).not.toContain("unavailable");
  });

  it("renders the shared models panel as a list, shows a lost connection, and opens pages in the main area", async () => {
    const { node } = attach({ "GET models": [200, { models: [record()] }] });
    await vi.waitFor(() => expect(node.querySelector(".mistudio-item")).not.toBeNull());
    expect(node.querySelector("h2").textContent).toBe("Models");

    FakeSocket.last.open();
    FakeSocket.last.drop();
    expect(node.querySelector(".mistudio-lab-sidebar__banner").textContent).toBe("Live updates lost: reconnecting…");

    button(node, "Open").click();
    button(node, "Download…").click();
    expect(opened).toEqual([["model", "m1"], ["download"]]);
    expect(node.querySelector("form, .mistudio-picker")).toBeNull();
  });

  it("shows why a Delete was refused while a kernel has the model loaded, and keeps the row", async () => {
    const message = "google/gemma-2-2b is in use by alice@gpu1 pid 4242 kernel since 2025-01-02 10:15:00 UTC";
    const { node, server } = attach({
      "GET models": [200, { models: [record()] }],
      "DELETE models/m1": [409, { error: { code: "conflict", message } }],
    });
    await vi.waitFor(() => expect(node.querySelector(".mistudio-item")).not.toBeNull());
    button(node, "Delete").click();
    button(node, "Delete").click(); // confirmed
    await vi.waitFor(() => expect(node.querySelector("[role=alert]")?.textContent).toBe(`conflict: ${message}`));
    expect(server.requests.map(({ method, path }) => `${method} ${path}`)).toContain("DELETE models/m1");
    expect(node.querySelectorAll(".mistudio-item")).toHaveLength(1);
  });
});
