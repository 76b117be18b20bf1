import { describe, expect, it, vi } from "vitest";
import { modelCard } from "../views/card.js";
import { button, buttonTexts, facts, mount } from "./dom.js";
import { downloading, record } from "./fixtures.js";

function setup(rec, confirming = false) {
  const send = vi.fn();
  const setConfirming = vi.fn();
  const root = mount();
  root.append(modelCard(rec, { send, confirming, setConfirming }));
  return { root, send, setConfirming };
}

describe("model card", () => {
  it("shows name, facts and status", () => {
    const { root } = setup(record());
    expect(root.querySelector("h3").textContent).toBe("google/gemma-2-2b");
    expect(facts(root)).toEqual({
      Parameters: "2.6B",
      Hidden: "2304",
      Layers: "26",
      Quantization: "bnb-4bit",
      Size: "1.5 GB",
    });
    expect(root.querySelector(".mistudio-badge").textContent).toBe("ready");
    expect(root.querySelector("[role=progressbar]")).toBeNull();
  });

  it("shows the dtype with the quantization and the repo when the name differs", () => {
    const { root } = setup(record({ name: "gemma fp16", quantization: "none", dtype: "float16" }));
    expect(facts(root).Quantization).toBe("none (float16)");
    expect(root.textContent).toContain("google/gemma-2-2b@main");
  });

  it("ready: Architecture and Delete", () => {
    const { root, send, setConfirming } = setup(record());
    expect(buttonTexts(root)).toEqual(["Architecture", "Delete"]);
    button(root, "Architecture").click();
    expect(send).toHaveBeenCalledWith({ action: "architecture", id: "m1" });
    button(root, "Delete").click();
    expect(setConfirming).toHaveBeenCalledWith(true);
    expect(send).toHaveBeenCalledOnce();
  });

  it("downloading: progress with bytes, speed, ETA and Cancel", () => {
    const { root, send } = setup(downloading());
    expect(root.querySelector("[role=progressbar]").getAttribute("aria-valuenow")).toBe("50");
    expect(root.textContent).toContain("10.5 MB/s");
    expect(root.textContent).toContain("ETA 25s");
    expect(buttonTexts(root)).toEqual(["Cancel download"]);
    button(root, "Cancel download").click();
    expect(send).toHaveBeenCalledWith({ action: "cancel", id: "m2" });
  });

  it.each(["cancelled", "failed", "interrupted"])("%s: Resume and Delete", (status) => {
    const { root, send } = setup(downloading({ status }));
    expect(buttonTexts(root)).toEqual(["Resume", "Delete"]);
    button(root, "Resume").click();
    expect(send).toHaveBeenCalledWith({ action: "resume", id: "m2" });
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
