import { beforeEach, describe, expect, it, vi } from "vitest";
import { PageModel, RestModel } from "../lab/model.ts";
import { architecture, downloading, estimate, hooks, inUse, preview, record } from "./fixtures.js";
import { FakeSocket, fakeServer } from "./lab-fakes.js";

const ready = record();
const running = downloading();

async function started(extra = {}) {
  const routes = { "GET models": [200, { models: [ready, running] }], ...extra };
  const server = fakeServer(routes);
  const model = new RestModel(server.settings);
  await model.start();
  FakeSocket.last.open();
  await vi.waitFor(() => expect(server.requests.filter((r) => r.path === "models")).toHaveLength(2));
  server.requests.length = 0;
  return { model, server, routes, socket: FakeSocket.last };
}

/** Every trait change, as [name, value]. */
function changes(model, names) {
  const seen = [];
  for (const name of names) model.on(`change:${name}`, (_, value) => seen.push([name, value]));
  return seen;
}

beforeEach(() => {
  FakeSocket.instances = [];
});

describe("RestModel: the anywidget model interface", () => {
  it("gets, sets and notifies change listeners with (model, value)", () => {
    const model = new RestModel(fakeServer().settings);
    const calls = [];
    const listener = (...args) => calls.push(args);
    model.on("change:filters", listener);
    model.set("filters", { text: "gpt" });
    expect(model.get("filters")).toEqual({ text: "gpt" });
    expect(calls).toEqual([[model, { text: "gpt" }]]);
    model.off("change:filters", listener);
    model.set("filters", {});
    model.on("change:filters", listener);
    model.off();
    model.set("filters", {});
    expect(calls).toHaveLength(1);
    model.save_changes(); // local state: nothing to send
  });
});

describe("RestModel: start", () => {
  it("loads the models, then subscribes to every model's events and re-reads the list once subscribed", async () => {
    const { model, socket } = await started();
    expect(model.get("models")).toEqual([ready, running]);
    expect(socket.sent).toEqual([{ action: "subscribe", channel: "models" }]);
  });

  it("takes what the user may do from GET /me as `can`, and every action (null) when the server does not say", async () => {
    const { model } = await started({ "GET me": [200, { name: "carol", can: ["read"] }] });
    expect(model.get("can")).toEqual(["read"]);
    expect((await started()).model.get("can")).toBeNull();
  });

  it("rejects, with the socket never opened, when the server extension is missing", async () => {
    const model = new RestModel(fakeServer().settings);
    await expect(model.start()).rejects.toMatchObject({ code: "no_extension", unavailable: true });
    expect(FakeSocket.instances).toHaveLength(0);
  });
});

describe("RestModel: view messages become REST calls", () => {
  it("preview: POST /models/preview, answer in `preview`", async () => {
    const { model, server } = await started({ "POST models/preview": [200, preview()] });
    model.set("error", { code: "old", message: "stale" });
    model.send({ action: "preview", repo_id: "tiny/llama", revision: "main" });
    await vi.waitFor(() => expect(model.get("preview")).toEqual(preview()));
    expect(model.get("error")).toBeNull();
    expect(server.requests.map(({ method, path, body }) => ({ method, path, body }))).toEqual([
      { method: "POST", path: "models/preview", body: { repo_id: "tiny/llama", revision: "main" } },
    ]);
  });

  it("preview error: `error` gets {code, message}", async () => {
    const { model } = await started({
      "POST models/preview": [404, { error: { code: "repo_not_found", message: "no such repo" } }],
    });
    model.send({ action: "preview", repo_id: "tiny/nope", revision: "main" });
    await vi.waitFor(() => expect(model.get("error")).toEqual({ code: "repo_not_found", message: "no such repo" }));
  });

  it("download: creates the entry, starts it with the token, and never keeps the token", async () => {
    const created = downloading({ id: "m3", status: "pending", progress: 0, bytes_done: 0 });
    const { model, server } = await started({
      "POST models": [200, created],
      "POST models/m3/download": [202, { ...created, status: "downloading" }],
    });
    model.send({ action: "download", repo_id: "tiny/gpt2", revision: "main", option: "bnb-4bit", token: "hf_secret" });
    await vi.waitFor(() => expect(model.get("record")?.status).toBe("downloading"));
    expect(server.requests.map(({ method, path, body }) => ({ method, path, body }))).toEqual([
      {
        method: "POST",
        path: "models",
        body: { repo_id: "tiny/gpt2", revision: "main", option: "bnb-4bit", token: "hf_secret" },
      },
      { method: "POST", path: "models/m3/download", body: { token: "hf_secret" } },
    ]);
    expect(model.get("models").map((m) => m.id)).toEqual(["m3", "m1", "m2"]);
    const traits = ["models", "record", "preview", "error"]
      .map((name) => JSON.stringify(model.get(name) ?? null))
      .join();
    expect(traits).not.toContain("hf_secret");
  });

  it("download without a token sends an empty body", async () => {
    const created = downloading({ id: "m3", status: "pending" });
    const { model, server } = await started({
      "POST models": [200, created],
      "POST models/m3/download": [202, created],
    });
    model.send({ action: "download", repo_id: "tiny/gpt2", revision: "main", option: "fp16", token: null });
    await vi.waitFor(() => expect(server.requests).toHaveLength(2));
    expect(server.requests[0].body).not.toHaveProperty("token");
    expect(server.requests[1].body).toEqual({});
  });

  it("cancel and resume: POST, and the answered record replaces the old one", async () => {
    const { model, server } = await started({
      "POST models/m2/cancel": [200, { ...running, status: "cancelled" }],
      "POST models/m2/resume": [202, { ...running, status: "downloading" }],
    });
    model.send({ action: "cancel", id: "m2" });
    await vi.waitFor(() => expect(model.get("models")[1].status).toBe("cancelled"));
    model.send({ action: "resume", id: "m2" });
    await vi.waitFor(() => expect(model.get("models")[1].status).toBe("downloading"));
    expect(server.requests.map(({ method, path, body }) => [method, path, body])).toEqual([
      ["POST", "models/m2/cancel", {}],
      ["POST", "models/m2/resume", {}],
    ]);
  });

  it("delete: DELETE, and the record leaves `models`", async () => {
    const { model, server } = await started({ "DELETE models/m1": [200, { id: "m1", freed_bytes: 1024 }] });
    model.send({ action: "delete", id: "m1" });
    await vi.waitFor(() => expect(model.get("models").map((m) => m.id)).toEqual(["m2"]));
    expect(server.requests.map(({ method, path }) => [method, path])).toEqual([["DELETE", "models/m1"]]);
  });

  it("a refused action sets `error` and changes nothing", async () => {
    const { model } = await started({
      "DELETE models/m2": [409, { error: { code: "conflict", message: "m2 is downloading" } }],
    });
    model.send({ action: "delete", id: "m2" });
    await vi.waitFor(() => expect(model.get("error")).toEqual({ code: "conflict", message: "m2 is downloading" }));
    expect(model.get("models")).toEqual([ready, running]);
  });
});

describe("PageModel: one model page's traits", () => {
  const pageRoutes = {
    "GET models/m2": [200, running],
    "GET models/m2/estimate": [200, estimate()],
    "GET models/m2/architecture": [200, architecture()],
    "GET models/m2/hooks": [200, hooks()],
  };

  it("loads the entry, the estimate, the architecture and the hook points", async () => {
    const { model, server } = await started(pageRoutes);
    const page = new PageModel(model, "m2");
    expect(page.get("entry")).toEqual(running); // from the list at once
    expect(page.get("estimate")).toBeNull();
    await page.load();
    expect(page.get("estimate")).toEqual(estimate());
    expect(page.get("architecture")).toEqual(architecture());
    expect(page.get("hooks")).toEqual(hooks());
    expect(page.get("error")).toBeNull();
    expect(server.requests.map(({ method, path, search }) => [method, path, search]).sort()).toEqual([
      ["GET", "models/m2", ""],
      ["GET", "models/m2/architecture", ""],
      ["GET", "models/m2/estimate", "?context=0&batch=1"],
      ["GET", "models/m2/hooks", ""],
    ]);
  });

  it("takes who has the model loaded from GET /models/{id} as `leases`, and keeps them as the list changes", async () => {
    const { leases } = inUse();
    const { model, socket } = await started({ ...pageRoutes, "GET models/m2": [200, { ...running, leases }] });
    const page = new PageModel(model, "m2");
    expect(page.get("leases")).toEqual([]);
    await page.load();
    expect(page.get("leases")).toEqual(leases);
    expect(page.get("entry")).toEqual(running);
    socket.push({ channel: "model/m2", event: "download_progress", data: { progress: 0.75 } });
    expect(page.get("entry").progress).toBe(0.75);
    expect(page.get("leases")).toEqual(leases);
  });

  it("asks for the estimate again with the context and batch the view sends", async () => {
    const { model, server } = await started(pageRoutes);
    const page = new PageModel(model, "m2");
    page.send({ action: "estimate", context: 4096, batch: 8 });
    await vi.waitFor(() => expect(page.get("estimate")).toEqual(estimate()));
    expect(server.requests.map((r) => r.search)).toEqual(["?context=4096&batch=8"]);
    page.send({ action: "delete" });
    expect(page.get("error")).toEqual({ code: "invalid_argument", message: "Unknown action delete" });
  });

  it("follows its entry through the list's events, until disposed", async () => {
    const { model, socket } = await started(pageRoutes);
    const page = new PageModel(model, "m2");
    const update = (progress) => ({ channel: "model/m2", event: "download_progress", data: { progress } });
    socket.push(update(0.75));
    expect(page.get("entry").progress).toBe(0.75);
    page.dispose();
    socket.push(update(0.9));
    expect(page.get("entry").progress).toBe(0.75);
  });

  it("a failed estimate shows as `error`; the architecture and hooks still load", async () => {
    const { model } = await started({
      ...pageRoutes,
      "GET models/m2/estimate": [404, { error: { code: "entry_not_found", message: "no config.json" } }],
    });
    const page = new PageModel(model, "m2");
    await page.load();
    expect(page.get("error")).toEqual({ code: "entry_not_found", message: "no config.json" });
    expect(page.get("hooks")).toEqual(hooks());
  });
});

describe("RestModel: one start for the sidebar and the pages", () => {
  it("is shared while it runs, and tried again after a failure", async () => {
    const routes = {};
    const server = fakeServer(routes);
    const model = new RestModel(server.settings);
    await expect(model.start()).rejects.toMatchObject({ code: "no_extension" });
    routes["GET models"] = [200, { models: [ready] }];
    await Promise.all([model.start(), model.start()]);
    expect(server.requests.filter((r) => r.path === "models")).toHaveLength(2);
    expect(model.models()).toEqual([ready]);
  });
});

describe("RestModel: server events become trait changes", () => {
  const progress = (id, data) => ({ channel: `model/${id}`, event: "download_progress", data });

  it("download_progress patches the record's progress fields, in `models` and the form's `record`", async () => {
    const { model, socket } = await started();
    model.set("record", running);
    socket.push(
      progress("m2", {
        progress: 0.75,
        downloaded_gb: 0.4,
        bytes_done: 384,
        bytes_total: 512,
        speed_bps: 5,
        eta_s: 3,
        current_file: "b.safetensors",
      }),
    );
    const patched = {
      ...running,
      progress: 0.75,
      bytes_done: 384,
      bytes_total: 512,
      speed_bps: 5,
      eta_s: 3,
      current_file: "b.safetensors",
    };
    expect(model.get("models")[1]).toEqual(patched);
    expect(model.get("record")).toEqual(patched);
    expect(model.get("models")[1]).not.toHaveProperty("downloaded_gb");
  });

  it("status_changed upserts the record: a download started in a notebook appears", async () => {
    const { model, socket } = await started();
    const fromKernel = downloading({ id: "k1", name: "tiny/pythia", status: "pending" });
    socket.push({
      channel: "model/k1",
      event: "status_changed",
      data: { status: "pending", previous: null, record: fromKernel },
    });
    expect(model.get("models").map((m) => m.id)).toEqual(["k1", "m1", "m2"]);
    const done = { ...running, status: "ready", progress: 1 };
    socket.push({
      channel: "model/m2",
      event: "status_changed",
      data: { status: "ready", previous: "downloading", record: done },
    });
    socket.push({ channel: "model/m2", event: "download_completed", data: { file_path: "/cache/x" } });
    expect(model.get("models")[2]).toEqual(done);
  });

  it("status_changed to deleted removes the record", async () => {
    const { model, socket } = await started();
    socket.push({
      channel: "model/m1",
      event: "status_changed",
      data: { status: "deleted", previous: "ready", record: null },
    });
    expect(model.get("models").map((m) => m.id)).toEqual(["m2"]);
  });

  it("progress of an unknown model and acknowledgements change nothing; a socket error shows", async () => {
    const { model, socket } = await started();
    const seen = changes(model, ["models"]);
    socket.push(progress("zz", { progress: 0.1 }));
    socket.push({ channel: "models", event: "subscribed", data: {} });
    expect(seen).toEqual([]);
    socket.push({ channel: "nope", event: "error", data: { code: "invalid_argument", message: "bad channel" } });
    expect(model.get("error")).toEqual({ code: "invalid_argument", message: "bad channel" });
  });

  it("after a reconnect, re-subscribes and reads the list again (events may have been missed)", async () => {
    vi.useFakeTimers();
    try {
      const { model, server, routes, socket } = await started();
      socket.drop();
      const missed = { ...running, status: "ready", progress: 1 };
      routes["GET models"] = [200, { models: [ready, missed] }];
      vi.advanceTimersByTime(500);
      expect(FakeSocket.instances).toHaveLength(2);
      FakeSocket.last.open();
      expect(FakeSocket.last.sent).toEqual([{ action: "subscribe", channel: "models" }]);
      await vi.waitFor(() => expect(model.get("models")).toEqual([ready, missed]));
      expect(server.requests.map((r) => r.path)).toEqual(["models"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("dispose closes the socket for good", async () => {
    const { model, socket } = await started();
    model.dispose();
    expect(socket.readyState).toBe(3);
    expect(model.isDisposed).toBe(true);
  });
});
