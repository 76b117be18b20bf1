import { describe, expect, it } from "vitest";
import architectureViewer from "../widgets/architecture_viewer.js";
import downloadForm from "../widgets/download_form.js";
import downloadProgress from "../widgets/download_progress.js";
import modelsPanel from "../widgets/models_panel.js";
import { FakeModel } from "./fake-model.js";
import { mount } from "./dom.js";

describe("anywidget entry modules", () => {
  it.each([
    [
      "models_panel",
      modelsPanel,
      {
        models: [],
        filters: {},
        error: null,
        preview: null,
        record: null,
        architecture: null,
        hooks: [],
        selected: [],
      },
    ],
    ["download_form", downloadForm, { preview: null, error: null, record: null }],
    ["download_progress", downloadProgress, { record: null }],
    ["architecture_viewer", architectureViewer, { architecture: null, hooks: [], selected: [], error: null }],
  ])("%s renders from its default traits and cleans up", (_, widget, state) => {
    const model = new FakeModel(state);
    const root = mount();
    const cleanup = widget.render({ model, el: root });
    expect(root.classList.contains("mistudio")).toBe(true);
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });
});
