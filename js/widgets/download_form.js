// anywidget entry: the download form view.
import { render } from "../views/download_form.js";

export default { render };
