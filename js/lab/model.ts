// The anywidget model interface over the REST API and the events socket, so that the notebook
// widgets' views (js/views) render unchanged in the sidebar and the model pages.
import { PageConfig } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';

import { ApiError, requestAPI } from './api';
import { EventSocket, IEventMessage } from './events';

/** A catalog record (the API's Model JSON); the fields this module reads. */
export interface IRecord {
  id: string;
  name: string;
  status: string;
  [field: string]: unknown;
}

export type Message = { action: string; [field: string]: unknown };
type Listener = (model: TraitModel, value: unknown) => void;

/** The subset of the anywidget model that the views use. */
export interface IWidgetModel {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  on(event: string, callback: Listener): void;
  off(event?: string | null, callback?: Listener | null): void;
  save_changes(): void;
  send(content: Message): void;
}

/** The channel that carries the events of every model. */
export const ALL_MODELS = 'models';

/** The prefix of a model's channel, `model/{id}`. */
const MODEL_CHANNEL = 'model/';

/** The endpoint of one catalog entry. */
export const modelPath = (id: string): string => `models/${encodeURIComponent(id)}`;

/** The fields of a record that a `download_progress` event carries. */
const PROGRESS_FIELDS = ['progress', 'bytes_done', 'bytes_total', 'speed_bps', 'eta_s', 'current_file'];

/** Traits in a map, with change listeners: the anywidget model's state, kept in the browser. */
export abstract class TraitModel implements IWidgetModel {
  constructor() {
    // Set by the server extension when its catalog is a team store's.
    this._state.set('team', String(PageConfig.getOption('mistudioTeam')) === 'true');
  }

  get(name: string): unknown {
    return this._state.get(name);
  }

  set(name: string, value: unknown): void {
    this._state.set(name, value);
    this._listeners.get(`change:${name}`)?.forEach((callback) => callback(this, value));
  }

  on(event: string, callback: Listener): void {
    if (!this._listeners.has(event)) {
      this._listeners.set(event, new Set());
    }
    this._listeners.get(event)!.add(callback);
  }

  off(event?: string | null, callback?: Listener | null): void {
    if (!event) {
      this._listeners.clear();
    } else if (!callback) {
      this._listeners.delete(event);
    } else {
      this._listeners.get(event)?.delete(callback);
    }
  }

  save_changes(): void {
    // Trait writes (filters, selected) are this front end's own state: there is no kernel to sync.
  }

  abstract send(content: Message): void;

  /** Show a failure as the `error` trait. */
  protected fail(error: unknown): void {
    const reason = error instanceof ApiError ? error : new ApiError(0, 'internal_error', String(error));
    this.set('error', reason.toJSON());
  }

  private _state = new Map<string, unknown>();
  private _listeners = new Map<string, Set<Listener>>();
}

/**
 * The traits of the models panel (`models`, `filters`, `error`, `can`) and of its download form (`preview`,
 * `record`), kept in this object. Messages the views send become REST calls whose answers, and the
 * server's events, change the traits. Nothing needs saving: trait writes are local.
 */
export class RestModel extends TraitModel implements IDisposable {
  constructor(
    readonly settings: ServerConnection.ISettings,
    readonly events: EventSocket = new EventSocket(settings),
  ) {
    super();
    events.message.connect((_, message) => this._onEvent(message));
    events.connectionChanged.connect((_, connected) => {
      if (connected) {
        void this.refresh().catch((error) => this.fail(error));
      }
    });
  }

  get isDisposed(): boolean {
    return this.events.isDisposed;
  }

  /**
   * Load the models, then follow every model's events; rejects with ApiError if the API is unavailable
   * (a later call tries again). The sidebar and the model pages share one start.
   */
  start(): Promise<void> {
    this._started ??= this._start().catch((error) => {
      this._started = null;
      throw error;
    });
    return this._started;
  }

  /** Re-read the whole list (on start and after each reconnect, when events may have been missed). */
  async refresh(): Promise<void> {
    const { models } = await this._request<{ models: IRecord[] }>('models');
    this.set('models', models);
  }

  send(message: Message): void {
    void this._dispatch(message).catch((error) => this.fail(error));
  }

  dispose(): void {
    this.events.dispose();
    this.off();
  }

  /** The models' list: the `models` trait. */
  models(): IRecord[] {
    return (this.get('models') as IRecord[] | undefined) ?? [];
  }

  private async _start(): Promise<void> {
    const [, can] = await Promise.all([this.refresh(), this._permissions()]);
    this.set('can', can);
    this.events.subscribe(ALL_MODELS);
    this.events.connect();
  }

  /** What the user may do (`GET /me`); null, which shows every action, when the server does not say. */
  private async _permissions(): Promise<string[] | null> {
    try {
      return (await this._request<{ can: string[] }>('me')).can;
    } catch {
      return null;
    }
  }

  private async _dispatch(message: Message): Promise<void> {
    const id = String(message.id);
    switch (message.action) {
      case 'preview':
        return this._preview(message);
      case 'download':
        return this._download(message);
      case 'cancel':
      case 'resume':
        return this._upsert(await this._request<IRecord>(`${modelPath(id)}/${message.action}`, 'POST', {}));
      case 'delete':
        await this._request(modelPath(id), 'DELETE');
        return this._remove(id);
      default:
        throw new ApiError(400, 'invalid_argument', `Unknown action ${message.action}`);
    }
  }

  private async _preview({ repo_id, revision }: Message): Promise<void> {
    const preview = await this._request('models/preview', 'POST', { repo_id, revision });
    this.set('error', null);
    this.set('preview', preview);
  }

  private async _download({ repo_id, revision, option, token }: Message): Promise<void> {
    const body = token ? { token } : {};
    const created = await this._request<IRecord>('models', 'POST', { repo_id, revision, option, ...body });
    this.set('record', created);
    this._upsert(await this._request<IRecord>(`${modelPath(created.id)}/download`, 'POST', body));
  }

  private _onEvent({ channel, event, data }: IEventMessage): void {
    const id = channel?.startsWith(MODEL_CHANNEL) ? channel.slice(MODEL_CHANNEL.length) : null;
    if (event === 'status_changed') {
      const record = data.record as IRecord | null;
      if (record) {
        this._upsert(record);
      } else if (id) {
        this._remove(id);
      }
    } else if (event === 'download_progress' && id) {
      this._patchProgress(id, data);
    } else if (event === 'error') {
      this.set('error', data);
    }
  }

  private _patchProgress(id: string, data: Record<string, unknown>): void {
    const current = this.models().find((m) => m.id === id);
    if (current) {
      const patch = Object.fromEntries(PROGRESS_FIELDS.filter((f) => f in data).map((f) => [f, data[f]]));
      this._upsert({ ...current, ...patch });
    }
  }

  /** Replace (or add, newest first) a record, in `models` and in the form's `record`. */
  private _upsert(record: IRecord): void {
    const models = this.models();
    const index = models.findIndex((m) => m.id === record.id);
    this.set('models', index < 0 ? [record, ...models] : models.map((m, i) => (i === index ? record : m)));
    if ((this.get('record') as IRecord | null)?.id === record.id) {
      this.set('record', record);
    }
  }

  private _remove(id: string): void {
    const models = this.models();
    if (models.some((m) => m.id === id)) {
      this.set(
        'models',
        models.filter((m) => m.id !== id),
      );
    }
  }

  private _request<T = unknown>(
    endpoint: string,
    method?: 'GET' | 'POST' | 'DELETE',
    body?: Record<string, unknown>,
  ): Promise<T> {
    return requestAPI<T>(this.settings, endpoint, { method, body });
  }

  private _started: Promise<void> | null = null;
}

/**
 * The traits of one model page: `entry` (the catalog record, live from the list's events), `leases` (who
 * has the model loaded, as `GET /models/{id}` said when the page loaded), `estimate` (the API's Estimate
 * JSON), `architecture`, `hooks`, `selected` and `error`. The view's `{action: "estimate", context, batch}`
 * asks the server again.
 */
export class PageModel extends TraitModel implements IDisposable {
  constructor(
    private readonly _list: RestModel,
    readonly id: string,
  ) {
    super();
    this.set('entry', _list.models().find((m) => m.id === id) ?? null);
    this.set('leases', []);
    this.set('estimate', null);
    this.set('architecture', null);
    this.set('hooks', []);
    this.set('selected', []);
    this.set('error', null);
    _list.on('change:models', this._onModels);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Fetch the entry, the estimate, the architecture and the hook points; each failure shows as `error`. */
  async load(): Promise<void> {
    const path = modelPath(this.id);
    await Promise.all(
      [
        this._list.start().catch(() => undefined), // live progress; the page works without it
        this._request<IRecord>(path).then(({ leases, ...entry }) => {
          this.set('leases', leases ?? []);
          this.set('entry', entry);
        }),
        this._estimate({ context: 0, batch: 1 }),
        Promise.all([this._request(`${path}/architecture`), this._request(`${path}/hooks`)]).then(
          ([architecture, hooks]) => {
            this.set('hooks', hooks);
            this.set('architecture', architecture);
          },
        ),
      ].map((step) => step.catch((error) => this.fail(error))),
    );
  }

  send(message: Message): void {
    if (message.action !== 'estimate') {
      this.fail(new ApiError(400, 'invalid_argument', `Unknown action ${message.action}`));
      return;
    }
    void this._estimate(message).catch((error) => this.fail(error));
  }

  dispose(): void {
    this._isDisposed = true;
    this._list.off('change:models', this._onModels);
    this.off();
  }

  private async _estimate({ context, batch }: Record<string, unknown>): Promise<void> {
    const query = new URLSearchParams({ context: String(context), batch: String(batch) });
    this.set('estimate', await this._request(`${modelPath(this.id)}/estimate?${query}`));
  }

  private _onModels = (): void => {
    const entry = this._list.models().find((m) => m.id === this.id);
    if (entry && entry !== this.get('entry')) {
      this.set('entry', entry);
    }
  };

  private _request<T = unknown>(endpoint: string): Promise<T> {
    return requestAPI<T>(this._list.settings, endpoint);
  }

  private _isDisposed = false;
}
