// anywidget entry: the models panel view.
import { render } from "../views/models_panel.js";

export default { render };
