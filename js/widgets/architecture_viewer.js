// anywidget entry: the architecture viewer view.
import { render } from "../views/architecture_viewer.js";

export default { render };
