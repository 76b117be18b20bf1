// `%mistudio open REPO` in a notebook: its output carries this MIME type, which JupyterLab renders as a
// link to the model page and, when the output is new, opens that page in a main-area tab.
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { el } from '../views/util.js';

export const OPEN_MIME = 'application/vnd.mistudio.open+json';

/** An output newer than this opens its page on render; older ones (a notebook opened again) only link. */
export const FRESH_S = 60;

/** What the magic sends: the catalog entry and when the cell ran (seconds since the epoch). */
export interface IOpenRequest {
  id: string;
  name: string;
  repo_id: string;
  requested_at: number;
}

const opened = new Set<string>();

/** Render the output; `open(id)` opens the model page (once per output, and only while it is fresh). */
export class OpenRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(
    private readonly _open: (id: string) => void,
    private readonly _now: () => number = () => Date.now() / 1000,
  ) {
    super();
    this.addClass('mistudio');
    this.addClass('mistudio-open-output');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const request = model.data[OPEN_MIME] as unknown as IOpenRequest;
    const key = `${request.id}@${request.requested_at}`;
    this.node.replaceChildren(
      el(
        'button',
        { type: 'button', class: 'mistudio-button', onclick: () => this._open(request.id) },
        `Open the model page of ${request.name}`,
      ),
    );
    if (!opened.has(key) && this._now() - request.requested_at < FRESH_S) {
      opened.add(key);
      this._open(request.id);
    }
  }
}

/** The renderer factory, ranked before the widget renderer (the output also carries the notebook widget). */
export function openRendererFactory(open: (id: string) => void): IRenderMime.IRendererFactory {
  return { safe: true, mimeTypes: [OPEN_MIME], defaultRank: -20, createRenderer: () => new OpenRenderer(open) };
}
