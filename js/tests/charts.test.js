import { describe, expect, it } from "vitest";
import { FIT_COLOURS, memoryChart, memoryGeometry } from "../views/memory.js";
import { blockColumns, blockParts, kindShares, parametersSection } from "../views/parameters.js";
import { mount } from "./dom.js";
import { architecture, estimate } from "./fixtures.js";

const GB = 1e9;
const pct = (node, name) => parseFloat(node.getAttribute(name));

function chart(value = estimate()) {
  const root = mount();
  root.append(memoryChart(value));
  return root;
}

const bar = (root, option) => root.querySelector(`.mistudio-mem__row[data-option="${option}"] svg`);
const segment = (root, option, key) => bar(root, option).querySelector(`[data-segment="${key}"]`);

describe("memory chart geometry", () => {
  // fixtures.estimate(): scale = max(totals 40/20/10 GB, peaks 52/22/10 GB, GPU 80 GB, RAM 64 GB) = 80 GB.
  it("scales every bar to the largest of totals, loading peaks, GPU and RAM", () => {
    const geometry = memoryGeometry(estimate());
    expect(geometry.scale).toBe(80 * GB);
    expect(geometry.rows.map((r) => [r.option.name, r.width])).toEqual([
      ["fp32", 50],
      ["bf16", 25],
      ["bnb-4bit", 12.5],
    ]);
  });

  it("draws bar lengths proportional to the estimate, split into weights, quant state, overhead and KV cache", () => {
    const root = chart();
    // fp32: weights 32 GB, overhead 4 GB, KV cache 4 GB → 40%, 5%, 5% of 80 GB, one after the other.
    expect([pct(segment(root, "fp32", "weights"), "x"), pct(segment(root, "fp32", "weights"), "width")]).toEqual([
      0, 40,
    ]);
    expect([pct(segment(root, "fp32", "overhead"), "x"), pct(segment(root, "fp32", "overhead"), "width")]).toEqual([
      40, 5,
    ]);
    expect([pct(segment(root, "fp32", "kv"), "x"), pct(segment(root, "fp32", "kv"), "width")]).toEqual([45, 5]);
    expect(segment(root, "fp32", "quant")).toBeNull(); // nothing to draw for 0 bytes
    // 4-bit: weights 6 GB and 1 GB of quantization state.
    expect(pct(segment(root, "bnb-4bit", "weights"), "width")).toBe(7.5);
    expect([pct(segment(root, "bnb-4bit", "quant"), "x"), pct(segment(root, "bnb-4bit", "quant"), "width")]).toEqual([
      7.5, 1.25,
    ]);
    const lengths = ["fp32", "bf16", "bnb-4bit"].map((o) =>
      [...bar(root, o).querySelectorAll("[data-segment]")].reduce((sum, r) => sum + pct(r, "width"), 0),
    );
    expect(lengths).toEqual([50, 25, 12.5]);
  });

  it("places the capacity lines at free GPU memory and available RAM on every bar", () => {
    const root = chart();
    for (const option of ["fp32", "bf16", "bnb-4bit"]) {
      const gpu = bar(root, option).querySelector(".mistudio-mem__cap--gpu");
      const ram = bar(root, option).querySelector(".mistudio-mem__cap--ram");
      expect([pct(gpu, "x1"), pct(gpu, "x2")]).toEqual([20, 20]); // 16 GB free of the 80 GB GPU
      expect([pct(ram, "x1"), pct(ram, "x2")]).toEqual([60, 60]); // 48 GB available of 64 GB RAM
    }
    const geometry = memoryGeometry(estimate());
    expect(geometry.capacity).toEqual({ gpu: { bytes: 16 * GB, x: 20 }, ram: { bytes: 48 * GB, x: 60 } });
  });

  it("colours each bar by its fit verdict", () => {
    const root = chart();
    expect(FIT_COLOURS).toEqual({
      gpu: "var(--mistudio-ok)",
      cpu: "var(--mistudio-warn)",
      none: "var(--mistudio-err)",
    });
    const fill = (option) => [...bar(root, option).querySelectorAll("[data-segment]")].map((r) => r.style.fill);
    expect(new Set(fill("fp32"))).toEqual(new Set(["var(--mistudio-err)"]));
    expect(new Set(fill("bf16"))).toEqual(new Set(["var(--mistudio-warn)"]));
    expect(new Set(fill("bnb-4bit"))).toEqual(new Set(["var(--mistudio-ok)"]));
    expect(root.querySelector('[data-option="bf16"] .mistudio-verdict').textContent).toBe("fits in RAM only");
  });

  it("marks the loading peak only where it exceeds the total", () => {
    const root = chart();
    const peak = bar(root, "fp32").querySelector(".mistudio-mem__peak");
    expect(pct(peak, "x1")).toBe(65); // 52 GB
    expect(bar(root, "bnb-4bit").querySelector(".mistudio-mem__peak")).toBeNull();
  });

  it("draws no GPU line without a GPU, and says so", () => {
    const root = chart(estimate({ system: { gpus: [], ram: { total_bytes: 64 * GB, available_bytes: 48 * GB } } }));
    expect(root.querySelector(".mistudio-mem__cap--gpu")).toBeNull();
    expect(root.querySelector(".mistudio-legend").textContent).toContain("No GPU");
    expect(memoryGeometry(estimate({ system: { gpus: [], ram: null } })).scale).toBe(52 * GB);
  });

  it("gives each bar its numbers as a text alternative, and every option a row of the breakdown table", () => {
    const root = chart();
    const svg = bar(root, "fp32");
    expect(svg.getAttribute("role")).toBe("img");
    expect(svg.getAttribute("aria-label")).toBe(
      "fp32: 40 GB (weights 32 GB, per-process overhead 4 GB, kv cache 4 GB), does not fit; " +
        "GPU 0 NVIDIA H100: 16 GB free of 80 GB; RAM: 48 GB available of 64 GB",
    );
    expect(svg.querySelector("title").textContent).toBe(svg.getAttribute("aria-label"));
    const cells = [...root.querySelectorAll('.mistudio-breakdown tr[data-option="bnb-4bit"] > *')].map(
      (c) => c.textContent,
    );
    expect(cells).toEqual(["4-bit (bnb)", "6 GB", "1 GB", "2 GB", "1 GB", "10 GB", "10 GB", "fits on GPU"]);
  });
});

describe("parameters charts", () => {
  it("shares by kind: segments proportional to the counts, in kind order, with the numbers as text", () => {
    const shares = kindShares(architecture().summary);
    const total = 39_383_808 + 28_348_416 + 56_669_184 + 38_400;
    expect(shares.map((s) => s.key)).toEqual(["embedding", "attention", "mlp", "norm"]);
    expect(shares[2].width).toBeCloseTo((56_669_184 / total) * 100, 2);
    expect(shares[2].x).toBeCloseTo(((39_383_808 + 28_348_416) / total) * 100, 2);
    const root = mount();
    root.append(parametersSection(architecture()));
    const rect = root.querySelector('.mistudio-kinds__chart [data-kind="mlp"]');
    expect(pct(rect, "width")).toBeCloseTo(45.54, 2);
    const mlp = root.querySelector('.mistudio-kinds li[data-kind="mlp"]').textContent;
    expect(mlp).toBe("MLP56.7M45.5%");
  });

  it("blocks in network order, layers unfolded, modules without parameters left out", () => {
    const parts = blockParts(architecture().tree);
    expect(parts.map((p) => [p.label, p.kind])).toEqual([
      ["wte", "embedding"],
      ...Array.from({ length: 12 }, (_, i) => [`layer ${i}`, "layer"]),
      ["ln_f", "norm"],
    ]);
    expect(parts[1].path).toBe("transformer.h.0");
    expect(parts[12].path).toBe("transformer.h.11");
  });

  it("column heights proportional to parameters, columns side by side", () => {
    const columns = blockColumns([
      { label: "a", params: 200 },
      { label: "b", params: 100 },
      { label: "c", params: 50 },
      { label: "d", params: 0 },
    ]);
    expect(columns.map((c) => [c.x, c.width, c.height, c.y])).toEqual([
      [0, 20, 100, 0],
      [25, 20, 50, 50],
      [50, 20, 25, 75],
      [75, 20, 0, 100],
    ]);
    const root = mount();
    root.append(parametersSection(architecture()));
    const svg = root.querySelector(".mistudio-blocks__chart");
    expect(svg.getAttribute("aria-label")).toBe("wte 38.6M, layer 0–11 7.1M each, ln_f 1.5K");
    expect(svg.querySelectorAll("rect")).toHaveLength(14);
  });
});
