// What opens in the main area: a model page per catalog entry, and the download form.
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { renderDownloadForm, renderModelPage } from '../views/index.js';
import { IRecord, PageModel, RestModel } from './model';
import { hooksCell } from './snippet';

/** The id of the model page of catalog entry `id` (one tab per model). */
export const pageId = (id: string): string => `mistudio-model-${id}`;

export interface IModelPageOptions {
  list: RestModel;
  id: string;
  /** Put code into a notebook ("Insert into notebook"). */
  insert: (code: string) => Promise<void>;
  /** Put code on the clipboard ("Copy code"). */
  copy: (code: string) => void;
}

/**
 * One model: its facts, memory, parameters, architecture and hook points (the shared model page view),
 * loaded when first shown; its title is the entry's name.
 */
export class ModelPage extends Widget {
  constructor({ list, id, insert, copy }: IModelPageOptions) {
    super();
    this.addClass('mistudio-lab-page');
    this.model = new PageModel(list, id);
    this.title.closable = true;
    const code = (names: string[]): string => hooksCell(id, this._entry()?.name ?? id, names);
    this._cleanup = renderModelPage({
      model: this.model,
      el: this.node,
      actions: [
        { label: 'Insert into notebook', onClick: (names: string[]) => void insert(code(names)) },
        { label: 'Copy code', onClick: (names: string[]) => copy(code(names)) },
      ],
    });
    this._retitle();
    this.model.on('change:entry', () => this._retitle());
  }

  readonly model: PageModel;

  get modelId(): string {
    return this.model.id;
  }

  dispose(): void {
    this._cleanup();
    this.model.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (!this._loaded) {
      this._loaded = true;
      void this.model.load();
    }
  }

  private _entry(): IRecord | null {
    return this.model.get('entry') as IRecord | null;
  }

  private _retitle(): void {
    const entry = this._entry();
    this.title.label = entry?.name ?? 'Model';
    this.title.caption = entry ? `miStudio: ${entry.repo_id}@${entry.revision}` : 'miStudio model';
  }

  private readonly _cleanup: () => void;
  private _loaded = false;
}

/** "Download…": the download form (preview, memory per option, token, progress); `close` on Cancel. */
export class DownloadPage extends Widget {
  constructor(list: RestModel, close: () => void) {
    super();
    this.addClass('mistudio-lab-page');
    this.title.label = 'Download a model';
    this.title.closable = true;
    this._cleanup = renderDownloadForm({ model: list, el: this.node, onClose: close });
  }

  dispose(): void {
    this._cleanup();
    super.dispose();
  }

  private readonly _cleanup: () => void;
}
