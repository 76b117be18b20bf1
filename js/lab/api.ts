// REST access to the server extension, through ServerConnection (token and XSRF handled there).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Where the server extension serves its API, relative to the server's base URL. */
export const API_PATH = 'mistudio/api/v1';

/** An error of the API (`{error: {code, message}}`), or of reaching it at all. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** No answer from the server, or one that is not the server extension's (it is not enabled). */
  get unavailable(): boolean {
    return this.code === 'unreachable' || this.code === 'no_extension';
  }

  /** The `{code, message}` shape the views show. */
  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

export interface IRequestOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  body?: Record<string, unknown>;
}

/** Call `endpoint` (relative to API_PATH) and parse its JSON answer; failures raise ApiError. */
export async function requestAPI<T>(
  settings: ServerConnection.ISettings,
  endpoint: string,
  { method = 'GET', body }: IRequestOptions = {},
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PATH, endpoint);
  // 'no-cache' (revalidate, ETag) rather than ServerConnection's default 'no-store', which appends a
  // `?<timestamp>` cache-buster that the API rejects as an unknown query parameter.
  const init: RequestInit = { method, cache: 'no-cache' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, 'unreachable', `The Jupyter server cannot be reached (${error}).`);
  }
  const data = await response.json().catch(() => undefined);
  if (response.ok) {
    return data as T;
  }
  const detail = data?.error;
  if (typeof detail?.code === 'string') {
    throw new ApiError(response.status, detail.code, detail.message ?? detail.code);
  }
  // The server extension always answers `{error: {...}}`; Jupyter's own 404 page means it is not there.
  if (response.status === 404) {
    throw new ApiError(404, 'no_extension', 'The mistudio server extension is not enabled.');
  }
  throw new ApiError(response.status, 'http_error', `HTTP ${response.status} ${response.statusText}`.trim());
}
