import { describe, expect, it, vi } from "vitest";
import {
  debounce,
  el,
  formatBytes,
  formatEta,
  formatParams,
  formatSpeed,
  keepFocus,
  select,
  watch,
} from "../views/util.js";
import byteSizes from "../../tests/format_bytes.json";
import { FakeModel } from "./fake-model.js";
import { mount } from "./dom.js";

describe("formatters", () => {
  // The table mistudio_jupyter/core/units.py is tested against too (tests/unit/test_units.py).
  it.each(byteSizes.cases)("formats %s bytes in decimal units as %j", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it("formats parameter counts like 2.6B", () => {
    expect(formatParams(2_614_341_888)).toBe("2.6B");
    expect(formatParams(124_439_808)).toBe("124M");
    expect(formatParams(70_553_706_496)).toBe("70.6B");
    expect(formatParams(7_000_000_000)).toBe("7B");
    expect(formatParams(512)).toBe("512");
    expect(formatParams(undefined)).toBe("—");
  });

  it("formats ETA and speed", () => {
    expect(formatEta(42)).toBe("42s");
    expect(formatEta(125)).toBe("2m 05s");
    expect(formatEta(3725)).toBe("1h 02m");
    expect(formatEta(null)).toBe("—");
    expect(formatSpeed(10.5e6)).toBe("10.5 MB/s");
    expect(formatSpeed(null)).toBe("—");
  });
});

describe("el", () => {
  it("sets attributes, properties, listeners and skips empty children", () => {
    const onclick = vi.fn();
    const node = el(
      "button",
      { class: "a", "aria-pressed": "true", disabled: true, hidden: false, onclick },
      "x",
      null,
      false,
      ["y"],
    );
    expect(node.className).toBe("a");
    expect(node.getAttribute("aria-pressed")).toBe("true");
    expect(node.disabled).toBe(true);
    expect(node.hidden).toBe(false);
    expect(node.textContent).toBe("xy");
    node.disabled = false;
    node.click();
    expect(onclick).toHaveBeenCalledOnce();
  });

  it("select picks the value", () => {
    expect(
      select(
        [
          ["", "All"],
          ["a", "A"],
        ],
        "a",
      ).value,
    ).toBe("a");
  });
});

describe("watch, keepFocus, debounce", () => {
  it("watch subscribes and unsubscribes", () => {
    const model = new FakeModel({ a: 1 });
    const cb = vi.fn();
    const off = watch(model, ["a", "b"], cb);
    model.kernelSet("a", 2);
    expect(cb).toHaveBeenCalledOnce();
    off();
    expect(model.listenerCount()).toBe(0);
  });

  it("keepFocus restores focus to the rebuilt element with the same key", () => {
    const root = mount();
    const build = () =>
      root.replaceChildren(el("button", { "data-focus": "k1" }, "one"), el("button", { "data-focus": "k2" }, "two"));
    build();
    root.lastChild.focus();
    const before = document.activeElement;
    keepFocus(root, build);
    expect(document.activeElement).not.toBe(before);
    expect(document.activeElement.dataset.focus).toBe("k2");
  });

  it("debounce calls once after the delay and can be cancelled", () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const d = debounce(fn, 100);
    d(1);
    d(2);
    vi.advanceTimersByTime(100);
    expect(fn).toHaveBeenCalledExactlyOnceWith(2);
    d(3);
    d.cancel();
    vi.advanceTimersByTime(200);
    expect(fn).toHaveBeenCalledOnce();
    vi.useRealTimers();
  });
});
