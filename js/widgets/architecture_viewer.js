// anywidget entry: the architecture viewer, which is the model page view.
import { render } from "../views/model_page.js";

export default { render };
