// anywidget entry: the download progress view.
import { render } from "../views/progress.js";

export default { render };
