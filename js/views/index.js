// The views, for hosts other than anywidget (the JupyterLab sidebar renders them over its own model).
export { render as renderArchitectureViewer } from "./architecture_viewer.js";
export { render as renderDownloadForm } from "./download_form.js";
export { render as renderDownloadProgress } from "./progress.js";
export { render as renderHookPicker } from "./hook_picker.js";
export { render as renderModelsPanel } from "./models_panel.js";
