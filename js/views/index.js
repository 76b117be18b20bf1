// The views, for hosts other than anywidget (the JupyterLab sidebar and model page render them over their own models).
export { render as renderDownloadForm } from "./download_form.js";
export { render as renderDownloadProgress } from "./progress.js";
export { render as renderHookPicker } from "./hook_picker.js";
export { render as renderModelPage } from "./model_page.js";
export { render as renderModelsPanel } from "./models_panel.js";
