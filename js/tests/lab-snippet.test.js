import { describe, expect, it } from "vitest";
import { hooksCell } from "../lab/snippet.ts";

describe("hooksCell", () => {
  it("loads the model by id and captures the picked hooks", () => {
    const code = hooksCell("m1", "tiny/gpt2", ["blocks.0.hook_resid_pre", 'odd"name']);
    expect(code).toBe(
      [
        "# Hooks picked in miStudio for tiny/gpt2",
        "from mistudio_jupyter import ModelManager, capture",
        "",
        "hooks = [",
        '    "blocks.0.hook_resid_pre",',
        '    "odd\\"name",',
        "]",
        'model, tokenizer = ModelManager().load("m1")',
        'inputs = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt").to(model.device)',
        "with capture(model, hooks) as activations:",
        "    model(**inputs)",
        "{name: tuple(tensor.shape) for name, tensor in activations.items()}",
      ].join("\n"),
    );
  });
});
