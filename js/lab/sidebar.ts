// The left-sidebar panel: the shared models panel view over a RestModel (a list of models; the
// download form and each model open in the main area), plus the state of the server extension.
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { renderModelsPanel } from '../views/index.js';
import { el } from '../views/util.js';
import { ApiError } from './api';
import { IRecord, RestModel } from './model';

export interface ISidebarOptions {
  model: RestModel;
  /** Open the model page of a catalog entry. */
  openModel: (id: string) => void;
  /** Open the download form. */
  openDownload: () => void;
}

const FIX_COMMANDS = ['pip install mistudio-jupyter', 'jupyter server extension enable mistudio_jupyter'];

/** What the panel shows when the API cannot be used; `retry` starts again. */
function unavailableNotice(error: ApiError, retry: () => void): HTMLElement {
  const help = error.unavailable
    ? [
        el('p', {}, 'The miStudio server extension is not available, so models cannot be listed or downloaded here.'),
        el('p', {}, 'Install and enable it, then restart JupyterLab:'),
        el('pre', {}, FIX_COMMANDS.join('\n')),
      ]
    : [];
  return el(
    'section',
    { class: 'mistudio mistudio-lab-notice', role: 'alert' },
    el('h3', {}, 'miStudio is unavailable'),
    ...help,
    el('p', { class: 'mistudio-error' }, `${error.code}: ${error.message}`),
    el('button', { type: 'button', class: 'mistudio-button', onclick: retry }, 'Retry'),
  );
}

export class MiStudioSidebar extends Widget {
  constructor({ model, openModel, openDownload }: ISidebarOptions) {
    super();
    this.addClass('mistudio-lab-sidebar');
    this._model = model;
    this._openModel = openModel;
    this._openDownload = openDownload;
    this.node.append(this._banner, this._body);
    model.events.connectionChanged.connect((_, connected) => {
      this._banner.textContent = connected ? '' : 'Live updates lost: reconnecting…';
    });
  }

  dispose(): void {
    this._cleanup?.();
    this._model.dispose();
    super.dispose();
  }

  // The panel starts talking to the server the first time it is seen, not when JupyterLab loads.
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._startOnce();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this._startOnce();
    }
  }

  private _startOnce(): void {
    if (!this._started) {
      this._started = true;
      void this._start();
    }
  }

  private async _start(): Promise<void> {
    this._body.replaceChildren(el('p', { class: 'mistudio-muted' }, 'Loading models…'));
    try {
      await this._model.start();
    } catch (error) {
      const reason = error instanceof ApiError ? error : new ApiError(0, 'internal_error', String(error));
      this._body.replaceChildren(unavailableNotice(reason, () => void this._start()));
      return;
    }
    this._cleanup = renderModelsPanel({
      model: this._model,
      el: this._body,
      onOpen: (record: IRecord) => this._openModel(record.id),
      onDownload: () => this._openDownload(),
    });
  }

  private readonly _model: RestModel;
  private readonly _openModel: (id: string) => void;
  private readonly _openDownload: () => void;
  private readonly _banner = el('div', { class: 'mistudio-lab-sidebar__banner', role: 'status' });
  private readonly _body = el('div', { class: 'mistudio-lab-sidebar__body' });
  private _cleanup: (() => void) | null = null;
  private _started = false;
}
