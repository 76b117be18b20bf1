// The server extension's events WebSocket: subscriptions that survive reconnects, with backoff.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { API_PATH } from './api';

/** What the server pushes: `{channel, event, data}`. */
export interface IEventMessage {
  channel: string | null;
  event: string;
  data: Record<string, unknown>;
}

export interface IBackoff {
  /** Delay before the first reconnect, doubled after each failed attempt. */
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: IBackoff = { initialMs: 500, maxMs: 30_000 };

/** The URL of the events socket, with the token when the settings carry one. */
export function eventsUrl(settings: ServerConnection.ISettings): string {
  const url = URLExt.join(settings.wsUrl, API_PATH, 'events');
  return settings.token ? `${url}?token=${encodeURIComponent(settings.token)}` : url;
}

/**
 * One socket to `/events`. Every (re)connection re-sends the subscriptions and emits `connected`,
 * so listeners can re-read what they may have missed; a dropped socket reconnects after
 * `initialMs`, `2 × initialMs`, … up to `maxMs`.
 */
export class EventSocket implements IDisposable {
  constructor(
    private readonly _settings: ServerConnection.ISettings,
    private readonly _backoff: IBackoff = DEFAULT_BACKOFF,
  ) {}

  /** Each server message. */
  get message(): ISignal<this, IEventMessage> {
    return this._message;
  }

  /** `true` on each open, `false` when an open socket drops. */
  get connectionChanged(): ISignal<this, boolean> {
    return this._connectionChanged;
  }

  get isConnected(): boolean {
    return this._socket?.readyState === WebSocket.OPEN;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Open the socket (once; later calls do nothing). */
  connect(): void {
    if (!this._socket && !this._isDisposed) {
      this._open();
    }
  }

  subscribe(channel: string): void {
    this._channels.add(channel);
    this._send('subscribe', channel);
  }

  unsubscribe(channel: string): void {
    this._channels.delete(channel);
    this._send('unsubscribe', channel);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    clearTimeout(this._timer);
    this._socket?.close();
    this._socket = null;
    Signal.clearData(this);
  }

  private _open(): void {
    const socket = new this._settings.WebSocket(eventsUrl(this._settings));
    this._socket = socket;
    socket.onopen = () => {
      this._attempts = 0;
      this._channels.forEach((channel) => this._send('subscribe', channel));
      this._connectionChanged.emit(true);
    };
    socket.onmessage = (event) => {
      this._message.emit(JSON.parse(event.data));
    };
    socket.onclose = () => {
      if (this._isDisposed || socket !== this._socket) {
        return;
      }
      if (this._attempts === 0) {
        this._connectionChanged.emit(false);
      }
      const { initialMs, maxMs } = this._backoff;
      const delay = Math.min(maxMs, initialMs * 2 ** this._attempts);
      this._attempts += 1;
      this._timer = setTimeout(() => this._open(), delay);
    };
  }

  private _send(action: 'subscribe' | 'unsubscribe', channel: string): void {
    if (this.isConnected) {
      this._socket!.send(JSON.stringify({ action, channel }));
    }
  }

  private _socket: WebSocket | null = null;
  private _channels = new Set<string>();
  private _attempts = 0;
  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _isDisposed = false;
  private _message = new Signal<this, IEventMessage>(this);
  private _connectionChanged = new Signal<this, boolean>(this);
}
