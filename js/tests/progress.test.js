import { describe, expect, it } from "vitest";
import { render } from "../views/progress.js";
import { FakeModel } from "./fake-model.js";
import { button, buttonTexts, mount } from "./dom.js";
import { downloading, record } from "./fixtures.js";

function setup(rec) {
  const model = new FakeModel({ record: rec });
  const root = mount();
  const cleanup = render({ model, el: root });
  return { model, root, cleanup };
}

const bar = (root) => root.querySelector("[role=progressbar]");

describe("download progress", () => {
  it("renders nothing without a record", () => {
    const { root } = setup(null);
    expect(root.children).toHaveLength(0);
  });

  it("shows bar, bytes, speed, ETA, file and status", () => {
    const { root } = setup(downloading());
    expect(bar(root).getAttribute("aria-valuenow")).toBe("50");
    expect(root.querySelector(".mistudio-bar__fill").style.width).toBe("50%");
    expect(root.querySelector(".mistudio-progress__stats").textContent).toBe(
      "256 MB of 512 MB · 50% · 10.5 MB/s · ETA 25s · 8 connections",
    );
    expect(root.querySelector(".mistudio-progress__file").textContent).toBe("File: model.safetensors");
    expect(root.querySelector(".mistudio-badge").textContent).toBe("downloading");
    expect(buttonTexts(root)).toEqual(["Cancel download"]);
  });

  it("re-renders on record changes and keeps focus on Cancel", () => {
    const { model, root } = setup(downloading());
    button(root, "Cancel download").focus();
    model.kernelSet("record", downloading({ progress: 0.75, bytes_done: 384e6, eta_s: 12 }));
    expect(bar(root).getAttribute("aria-valuenow")).toBe("75");
    expect(root.textContent).toContain("ETA 12s");
    expect(document.activeElement.textContent).toBe("Cancel download");
  });

  it("Cancel sends cancel with the id", () => {
    const { model, root } = setup(downloading());
    button(root, "Cancel download").click();
    expect(model.sent).toEqual([{ action: "cancel", id: "m2" }]);
  });

  it("offers Resume and shows the error when failed", () => {
    const { model, root } = setup(
      downloading({ status: "failed", error: { code: "download_failed", message: "checksum mismatch" } }),
    );
    expect(root.querySelector(".mistudio-error").textContent).toBe("download_failed: checksum mismatch");
    expect(root.querySelector(".mistudio-progress__file")).toBeNull();
    button(root, "Resume").click();
    expect(model.sent).toEqual([{ action: "resume", id: "m2" }]);
  });

  it("shows the note of a download that had to start again", () => {
    const note = "25 MB fetched before were no longer on disk; they are fetched again";
    const { root } = setup(downloading({ note }));
    expect(root.querySelector(".mistudio-note").textContent).toBe(note);
    expect(setup(downloading()).root.querySelector(".mistudio-note")).toBeNull();
  });

  it("shows a full bar and no buttons when ready", () => {
    const { root } = setup(record());
    expect(bar(root).getAttribute("aria-valuenow")).toBe("100");
    expect(buttonTexts(root)).toEqual([]);
  });

  it("computes the fraction from bytes when progress is missing", () => {
    const { root } = setup(downloading({ progress: null, bytes_done: 1, bytes_total: 4 }));
    expect(bar(root).getAttribute("aria-valuenow")).toBe("25");
  });

  it("cleanup removes its listeners", () => {
    const { model, cleanup } = setup(null);
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });
});
