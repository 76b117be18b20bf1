// The anywidget model interface over the REST API and the events socket, so that the notebook
// widgets' views (js/views) render unchanged in the sidebar.
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
type Listener = (model: RestModel, value: unknown) => void;

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
const modelPath = (id: string): string => `models/${encodeURIComponent(id)}`;

/** The fields of a record that a `download_progress` event carries. */
const PROGRESS_FIELDS = ['progress', 'bytes_done', 'bytes_total', 'speed_bps', 'eta_s', 'current_file'];

/**
 * The traits of the models panel (`models`, `filters`, `error`), of its download form (`preview`,
 * `record`) and of its architecture viewer (`architecture`, `hooks`, `selected`), kept in this
 * object. Messages the views send become REST calls whose answers, and the server's events, change
 * the traits. Nothing needs saving: `save_changes` is a no-op, as trait writes are local.
 */
export class RestModel implements IWidgetModel, IDisposable {
  constructor(
    private readonly _settings: ServerConnection.ISettings,
    readonly events: EventSocket = new EventSocket(_settings),
  ) {
    events.message.connect((_, message) => this._onEvent(message));
    events.connectionChanged.connect((_, connected) => {
      if (connected) {
        void this.refresh().catch((error) => this._fail(error));
      }
    });
  }

  /** The record whose architecture is loaded (the hooks in `selected` are its). */
  get architectureRecord(): IRecord | null {
    return this._architectureRecord;
  }

  get isDisposed(): boolean {
    return this.events.isDisposed;
  }

  /** Load the models, then follow every model's events; rejects with ApiError if the API is unavailable. */
  async start(): Promise<void> {
    await this.refresh();
    this.events.subscribe(ALL_MODELS);
    this.events.connect();
  }

  /** Re-read the whole list (on start and after each reconnect, when events may have been missed). */
  async refresh(): Promise<void> {
    const { models } = await this._request<{ models: IRecord[] }>('models');
    this.set('models', models);
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

  send(message: Message): void {
    void this._dispatch(message).catch((error) => this._fail(error));
  }

  dispose(): void {
    this.events.dispose();
    this._listeners.clear();
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
      case 'architecture':
        return this._architecture(id);
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

  private async _architecture(id: string): Promise<void> {
    const record = this._models().find((m) => m.id === id) ?? null;
    this._architectureRecord = record;
    this.set('error', null);
    this.set('architecture', null);
    this.set('hooks', []);
    this.set('selected', []);
    const [architecture, hooks] = await Promise.all([
      this._request(`${modelPath(id)}/architecture`),
      this._request(`${modelPath(id)}/hooks`),
    ]);
    if (this._architectureRecord === record) {
      this.set('architecture', architecture);
      this.set('hooks', hooks);
    }
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
    const current = this._models().find((m) => m.id === id);
    if (current) {
      const patch = Object.fromEntries(PROGRESS_FIELDS.filter((f) => f in data).map((f) => [f, data[f]]));
      this._upsert({ ...current, ...patch });
    }
  }

  /** Replace (or add, newest first) a record, in `models` and in the form's `record`. */
  private _upsert(record: IRecord): void {
    const models = this._models();
    const index = models.findIndex((m) => m.id === record.id);
    this.set('models', index < 0 ? [record, ...models] : models.map((m, i) => (i === index ? record : m)));
    if ((this.get('record') as IRecord | null)?.id === record.id) {
      this.set('record', record);
    }
  }

  private _remove(id: string): void {
    const models = this._models();
    if (models.some((m) => m.id === id)) {
      this.set(
        'models',
        models.filter((m) => m.id !== id),
      );
    }
  }

  private _models(): IRecord[] {
    return (this.get('models') as IRecord[] | undefined) ?? [];
  }

  private _fail(error: unknown): void {
    const reason = error instanceof ApiError ? error : new ApiError(0, 'internal_error', String(error));
    this.set('error', reason.toJSON());
  }

  private _request<T = unknown>(
    endpoint: string,
    method?: 'GET' | 'POST' | 'DELETE',
    body?: Record<string, unknown>,
  ): Promise<T> {
    return requestAPI<T>(this._settings, endpoint, { method, body });
  }

  private _state = new Map<string, unknown>();
  private _listeners = new Map<string, Set<Listener>>();
  private _architectureRecord: IRecord | null = null;
}
