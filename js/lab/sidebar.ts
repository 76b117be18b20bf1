// The left-sidebar panel: the shared models panel view over a RestModel, plus what only JupyterLab
// has: the state of the server extension, and "Insert into notebook" for the picked hooks.
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { renderModelsPanel } from '../views/index.js';
import { el } from '../views/util.js';
import { ApiError } from './api';
import { RestModel } from './model';

export interface ISidebarOptions {
  model: RestModel;
  /** Insert the selected hooks into a notebook. */
  onInsert: () => void;
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
  constructor({ model, onInsert }: ISidebarOptions) {
    super();
    this.addClass('mistudio-lab-sidebar');
    this._model = model;
    this._insert = el(
      'button',
      { type: 'button', class: 'mistudio-button mistudio-button--primary', onclick: onInsert },
      'Insert into notebook',
    );
    this._footer = el('div', { class: 'mistudio mistudio-lab-sidebar__footer', hidden: true }, this._insert);
    this.node.append(this._banner, this._body, this._footer);
    model.on('change:selected', () => this._updateFooter());
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
    this._cleanup = renderModelsPanel({ model: this._model, el: this._body });
  }

  private _updateFooter(): void {
    const count = ((this._model.get('selected') as string[] | undefined) ?? []).length;
    const record = this._model.architectureRecord;
    this._footer.hidden = count === 0 || !record;
    this._insert.textContent = `Insert ${count} hook${count === 1 ? '' : 's'} of ${record?.name} into notebook`;
  }

  private readonly _model: RestModel;
  private readonly _banner = el('div', { class: 'mistudio-lab-sidebar__banner', role: 'status' });
  private readonly _body = el('div', { class: 'mistudio-lab-sidebar__body' });
  private readonly _footer: HTMLElement;
  private readonly _insert: HTMLElement;
  private _cleanup: (() => void) | null = null;
  private _started = false;
}
