import { describe, expect, it, vi } from "vitest";
import { modelFacts, modelRow } from "../views/card.js";
import { button, buttonTexts, facts, mount } from "./dom.js";
import { downloading, record } from "./fixtures.js";

function setup(rec, confirming = false, can = null) {
  const send = vi.fn();
  const setConfirming = vi.fn();
  const root = mount();
  root.append(modelRow(rec, { send, confirming, setConfirming, can }));
  return { root, send, setConfirming };
}

describe("model row", () => {
  it("shows name, status and one line of parameters, quantization and size", () => {
    const { root } = setup(record());
    expect(root.querySelector("h3").textContent).toBe("google/gemma-2-2b");
    expect(root.querySelector("h3").title).toBe("google/gemma-2-2b");
    expect(root.querySelector(".mistudio-item__meta").textContent).toBe("2.6B · bnb-4bit · 1.5 GB");
    expect(root.querySelector(".mistudio-badge").textContent).toBe("ready");
    expect(root.querySelector("[role=progressbar]")).toBeNull();
  });

  it("model facts: parameters, hidden size, layers, quantization, size", () => {
    const root = mount();
    root.append(modelFacts(record()));
    expect(facts(root)).toEqual({
      Parameters: "2.6B",
      Hidden: "2304",
      Layers: "26",
      Quantization: "bnb-4bit",
      Size: "1.5 GB",
    });
  });

  it("in a team store's catalog, names who asked for the model in the row and the facts", () => {
    const send = vi.fn();
    const root = mount();
    root.append(modelRow(record({ requested_by: "bob" }), { send, setConfirming: vi.fn(), team: true }));
    expect(root.querySelector(".mistudio-item__meta").textContent).toBe("2.6B · bnb-4bit · 1.5 GB · by bob");
    expect(root.querySelector(".mistudio-item__requester").title).toBe("requested by bob");
    const page = mount();
    page.append(modelFacts(record({ requested_by: "bob" }), { team: true }));
    expect(facts(page)["Requested by"]).toBe("bob");
  });

  it("in a catalog of one's own, leaves the requester out", () => {
    const { root } = setup(record({ requested_by: "8b29f317fc1943e782418684c00b9ea3" }));
    expect(root.querySelector(".mistudio-item__meta").textContent).toBe("2.6B · bnb-4bit · 1.5 GB");
    const page = mount();
    page.append(modelFacts(record({ requested_by: "8b29f317fc1943e782418684c00b9ea3" })));
    expect(facts(page)).not.toHaveProperty("Requested by");
  });

  it("shows the dtype with the quantization, and the repo in the name's tooltip when they differ", () => {
    const { root } = setup(record({ name: "gemma fp16", quantization: "none", dtype: "float16" }));
    expect(root.querySelector(".mistudio-item__meta").textContent).toContain("none (float16)");
    expect(root.querySelector("h3").title).toBe("gemma fp16 (google/gemma-2-2b@main)");
  });

  it("ready: Open and Delete", () => {
    const { root, send, setConfirming } = setup(record());
    expect(buttonTexts(root)).toEqual(["Open", "Delete"]);
    button(root, "Open").click();
    expect(send).toHaveBeenCalledWith({ action: "architecture", id: "m1" });
    button(root, "Delete").click();
    expect(setConfirming).toHaveBeenCalledWith(true);
    expect(send).toHaveBeenCalledOnce();
  });

  it("downloading: a thin bar, percent, speed and ETA (bytes in the tooltip); Open and Cancel", () => {
    const { root, send } = setup(downloading());
    expect(root.querySelector(".mistudio-progress--compact [role=progressbar]").getAttribute("aria-valuenow")).toBe(
      "50",
    );
    const stats = root.querySelector(".mistudio-progress__stats");
    expect(stats.textContent).toBe("50% · 10.5 MB/s · ETA 25s");
    expect(stats.title).toBe("256 MB of 512 MB · 50% · 10.5 MB/s · ETA 25s · 8 connections");
    expect(buttonTexts(root)).toEqual(["Open", "Cancel download"]);
    button(root, "Cancel download").click();
    expect(send).toHaveBeenCalledWith({ action: "cancel", id: "m2" });
  });

  it.each(["cancelled", "failed", "interrupted"])("%s: Open, Resume and Delete", (status) => {
    const { root, send } = setup(downloading({ status }));
    expect(buttonTexts(root)).toEqual(["Open", "Resume", "Delete"]);
    button(root, "Resume").click();
    expect(send).toHaveBeenCalledWith({ action: "resume", id: "m2" });
  });

  it("shows only the actions the user may do", () => {
    expect(buttonTexts(setup(downloading({ status: "failed" }), false, ["read"]).root)).toEqual(["Open"]);
    expect(buttonTexts(setup(downloading(), false, ["read"]).root)).toEqual(["Open"]);
    expect(buttonTexts(setup(downloading({ status: "failed" }), false, ["read", "download"]).root)).toEqual([
      "Open",
      "Resume",
    ]);
    expect(buttonTexts(setup(downloading({ status: "failed" }), false, ["read", "delete"]).root)).toEqual([
      "Open",
      "Delete",
    ]);
  });

  it("failed: shows the error line", () => {
    const { root } = setup(downloading({ status: "failed", error: { code: "hub_unreachable", message: "timed out" } }));
    expect(root.querySelector(".mistudio-error").textContent).toBe("hub_unreachable: timed out");
  });

  it("confirming: states the bytes freed; Delete sends, Keep cancels", () => {
    const { root, send, setConfirming } = setup(record(), true);
    expect(root.querySelector(".mistudio-confirm").textContent).toContain(
      "Delete google/gemma-2-2b and free up to 1.5 GB?",
    );
    expect(buttonTexts(root)).toEqual(["Delete", "Keep"]);
    button(root, "Keep").click();
    expect(setConfirming).toHaveBeenCalledWith(false);
    button(root, "Delete").click();
    expect(send).toHaveBeenCalledWith({ action: "delete", id: "m1" });
  });
});
