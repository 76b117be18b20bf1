import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { render } from "../views/download_form.js";
import { FakeModel } from "./fake-model.js";
import { button, control, facts, mount, type } from "./dom.js";
import { downloading, preview } from "./fixtures.js";

function setup(state = {}, onClose) {
  const model = new FakeModel({ preview: null, error: null, record: null, ...state });
  const root = mount();
  const cleanup = render({ model, el: root, onClose });
  const repo = control(root, "Hugging Face repo id");
  const revision = control(root, "Revision");
  const token = control(root, "Hugging Face token");
  return { model, root, cleanup, repo, revision, token };
}

/** Type a repo id, let the debounce fire, and answer with a preview as the kernel would. */
function previewed(state = {}, p = preview()) {
  const ctx = setup(state);
  type(ctx.repo, p.repo_id);
  vi.advanceTimersByTime(400);
  ctx.model.kernelSet("error", null);
  ctx.model.kernelSet("preview", p);
  return ctx;
}

const rows = (root) => [...root.querySelectorAll(".mistudio-mem__row")];
const row = (root, key) => root.querySelector(`[data-option="${key}"]`);
const radio = (root, key) => row(root, key).querySelector("input[type=radio]");

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("download form: preview request", () => {
  it("sends one debounced preview message per repo id", () => {
    const { model, repo } = setup();
    type(repo, "tiny/l");
    type(repo, "tiny/llama");
    vi.advanceTimersByTime(399);
    expect(model.sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(model.sent).toEqual([{ action: "preview", repo_id: "tiny/llama", revision: "main" }]);
  });

  it("sends the revision, trims input, skips empty and repeated requests", () => {
    const { model, repo, revision } = setup();
    type(repo, "   ");
    vi.advanceTimersByTime(400);
    expect(model.sent).toEqual([]);
    type(repo, " tiny/llama ");
    type(revision, "v1.0");
    vi.advanceTimersByTime(400);
    type(revision, "v1.0");
    vi.advanceTimersByTime(400);
    expect(model.sent).toEqual([{ action: "preview", repo_id: "tiny/llama", revision: "v1.0" }]);
  });

  it("Enter requests the preview at once", () => {
    const { model, root, repo } = setup();
    type(repo, "tiny/gpt2");
    root.querySelector("form").dispatchEvent(new Event("submit", { cancelable: true }));
    expect(model.sent).toEqual([{ action: "preview", repo_id: "tiny/gpt2", revision: "main" }]);
    vi.advanceTimersByTime(1000);
    expect(model.sent).toHaveLength(1);
  });

  it("shows 'Fetching preview…' until the kernel replies, then the error", () => {
    const { model, root, repo } = setup();
    type(repo, "tiny/nope");
    vi.advanceTimersByTime(400);
    expect(root.querySelector(".mistudio-status").textContent).toBe("Fetching preview…");
    model.kernelSet("error", { code: "repo_not_found", message: "tiny/nope does not exist" });
    const alert = root.querySelector("[role=alert]");
    expect(alert.textContent).toBe("repo_not_found: tiny/nope does not exist");
    expect(root.querySelector(".mistudio-preview")).toBeNull();
  });
});

describe("download form: preview display", () => {
  it("shows family, params, dims, gated, license and warnings", () => {
    const { root } = previewed();
    const shown = facts(root.querySelector(".mistudio-preview"));
    expect(shown).toMatchObject({
      Family: "llama",
      Parameters: "8B",
      "Hidden size": "4096",
      Layers: "32",
      Heads: "32 (8 KV)",
      Gated: "no",
      License: "llama3",
      Download: "16 GB",
      "Hook table": "verified",
    });
    expect(root.querySelector(".mistudio-preview h3").textContent).toBe("tiny/llama @ main (abcdef0)");
    expect([...root.querySelectorAll(".mistudio-warnings li")].map((li) => li.textContent)).toEqual([
      "remote code is not used",
    ]);
    expect(root.querySelector(".mistudio-status").textContent).toBe("");
  });

  it("prints sizes in decimal units, as the Hub and the CLI do (Llama-3-70B: 141 GB, not 131)", () => {
    const { root } = previewed({}, preview({ download_bytes: 141_107_558_193 }));
    expect(facts(root.querySelector(".mistudio-preview")).Download).toBe("141 GB");
  });

  it("marks gated repos and highlights the token field", () => {
    const { root, token } = previewed({}, preview({ gated: "manual" }));
    expect(facts(root.querySelector(".mistudio-preview")).Gated).toBe("yes (manual)");
    expect(token.closest("label").classList.contains("mistudio-field--needed")).toBe(true);
  });

  it("ignores a preview for another repo id (a stale reply)", () => {
    const { model, root, repo } = previewed();
    type(repo, "tiny/gpt2");
    expect(root.querySelector(".mistudio-preview")).toBeNull();
    model.kernelSet("preview", preview({ repo_id: "tiny/gpt2" }));
    expect(root.querySelector(".mistudio-preview h3").textContent).toContain("tiny/gpt2");
  });
});

describe("download form: parameters", () => {
  it("shows the share of each kind of parameter, when the preview counts them", () => {
    const { root } = previewed();
    const kinds = [...root.querySelectorAll(".mistudio-preview .mistudio-kinds li")].map((li) => li.dataset.kind);
    expect(kinds).toEqual(["embedding", "attention", "mlp", "norm", "lm_head"]);
    expect(root.querySelector(".mistudio-preview figcaption").textContent).toBe("Share by kind of 8B parameters");
    const { root: unknown } = previewed({}, preview({ params_by_type: {} }));
    expect(unknown.querySelector(".mistudio-kinds")).toBeNull();
  });
});

describe("download form: memory options", () => {
  it("lists every memory option with total and verdict", () => {
    const { root } = previewed();
    expect(rows(root).map((r) => r.dataset.option)).toEqual([
      "fp32",
      "fp16",
      "bf16",
      "bnb-8bit",
      "bnb-4bit",
      "bnb-4bit-dq",
    ]);
    const verdicts = rows(root).map((r) => r.querySelector(".mistudio-verdict").textContent);
    expect(verdicts).toEqual([
      "does not fit",
      "fits in RAM only",
      "fits in RAM only",
      "fits on GPU",
      "fits on GPU",
      "fits on GPU",
    ]);
    expect(row(root, "fp16").querySelector(".mistudio-mem__total").textContent).toBe("16 GB");
    expect(row(root, "fp32").classList.contains("mistudio-fit--none")).toBe(true);
    const legend = root.querySelector(".mistudio-legend").textContent;
    expect(legend).toContain("GPU 0 NVIDIA T4: 12 GB free of 16 GB");
    expect(legend).toContain("RAM: 24 GB available of 32 GB");
  });

  it("defaults to the first option that fits the GPU; double quant is chosen when loading", () => {
    const { root } = previewed();
    expect(radio(root, "bnb-8bit").checked).toBe(true);
    expect(radio(root, "bnb-4bit-dq").disabled).toBe(true);
    expect(row(root, "bnb-4bit-dq").querySelector(".mistudio-mem__label").textContent).toBe(
      "4-bit, double quant (bnb), chosen when loading",
    );
    expect(row(root, "bnb-8bit").classList.contains("mistudio-mem__row--chosen")).toBe(true);
  });

  it("falls back to RAM, then to the smallest option", () => {
    const noGpu = preview();
    for (const key of Object.keys(noGpu.fit))
      noGpu.fit[key] = { gpu: false, ram: key !== "fp32", verdict: key === "fp32" ? "none" : "cpu" };
    expect(radio(previewed({}, noGpu).root, "fp16").checked).toBe(true);
    for (const key of Object.keys(noGpu.fit)) noGpu.fit[key] = { gpu: false, ram: false, verdict: "none" };
    expect(radio(previewed({}, noGpu).root, "bnb-4bit").checked).toBe(true);
  });

  it("choosing an option marks its row and keeps focus on the radio", () => {
    const { root } = previewed();
    radio(root, "bf16").focus();
    radio(root, "bf16").click();
    expect(radio(root, "bf16").checked).toBe(true);
    expect(document.activeElement).toBe(radio(root, "bf16"));
    expect(row(root, "bf16").classList.contains("mistudio-mem__row--chosen")).toBe(true);
    expect(row(root, "bnb-8bit").classList.contains("mistudio-mem__row--chosen")).toBe(false);
  });
});

describe("download form: start, token, cancel", () => {
  it("Start is disabled until a preview for the typed repo is shown", () => {
    const { root, repo } = setup();
    expect(button(root, "Start download").disabled).toBe(true);
    type(repo, "tiny/llama");
    expect(button(root, "Start download").disabled).toBe(true);
  });

  it.each(["fp32", "fp16", "bf16", "bnb-8bit", "bnb-4bit"])(
    "Start with %s sends the option by the name the memory table gives it",
    (option) => {
      const { model, root } = previewed();
      radio(root, option).click();
      button(root, "Start download").click();
      expect(model.sent.at(-1)).toEqual({
        action: "download",
        repo_id: "tiny/llama",
        revision: "main",
        option,
        token: null,
      });
    },
  );

  it("the token goes only into the start message, is cleared, and never touches a trait", () => {
    const { model, root, token } = previewed();
    type(token, "hf_secret_123");
    button(root, "Start download").click();
    expect(model.sent.at(-1).token).toBe("hf_secret_123");
    expect(token.value).toBe("");
    expect(model.sets).toEqual([]);
    expect(JSON.stringify(model.state)).not.toContain("hf_secret_123");
    expect(model.sent.filter((m) => JSON.stringify(m).includes("hf_secret_123"))).toHaveLength(1);
  });

  it("shows the progress of trait `record`, whose Cancel cancels the download", () => {
    const { model, root } = previewed();
    model.kernelSet("record", downloading());
    expect(root.querySelector("[role=progressbar]").getAttribute("aria-valuenow")).toBe("50");
    button(root, "Cancel download").click();
    expect(model.sent.at(-1)).toEqual({ action: "cancel", id: "m2" });
  });

  it("shows a start error from the kernel next to the preview", () => {
    const { model, root } = previewed();
    button(root, "Start download").click();
    model.kernelSet("error", { code: "gated_login_required", message: "a token is needed" });
    expect(root.querySelector("[role=alert]").textContent).toBe("gated_login_required: a token is needed");
    expect(root.querySelector(".mistudio-preview")).not.toBeNull();
  });

  it("Cancel clears the form and calls onClose", () => {
    const onClose = vi.fn();
    const { model, root, repo, revision, token } = setup({}, onClose);
    type(repo, "tiny/llama");
    type(revision, "dev");
    type(token, "hf_x");
    button(root, "Cancel").click();
    vi.advanceTimersByTime(1000);
    expect([repo.value, revision.value, token.value]).toEqual(["", "main", ""]);
    expect(model.sent).toEqual([]);
    expect(onClose).toHaveBeenCalledOnce();
  });

  it("cleanup removes listeners and the pending preview request", () => {
    const { model, repo, cleanup } = setup();
    type(repo, "tiny/llama");
    cleanup();
    vi.advanceTimersByTime(1000);
    expect(model.sent).toEqual([]);
    expect(model.listenerCount()).toBe(0);
  });
});
