// Stand-ins for the Jupyter server in the lab tests: a fetch over a route table, and a WebSocket the
// test opens, feeds and drops. Both go through the real ServerConnection settings.
import { ServerConnection } from "@jupyterlab/services";

export const BASE = "http://localhost:8888/lab-base/";
export const API = "/lab-base/mistudio/api/v1/";

/** A WebSocket whose life the test drives: `open()`, `push(message)`, `drop()`. */
export class FakeSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.instances.push(this);
  }

  static get last() {
    return FakeSocket.instances.at(-1);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close() {
    this.readyState = 3;
    this.onclose?.({ code: 1000 });
  }

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  push(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
}

/**
 * A server answering `routes["METHOD path"]` (path relative to the API root) with `[status, body]`
 * (a string body is sent as HTML); unknown routes answer Jupyter's 404 page. `requests` records
 * `{method, path, body, headers}`.
 */
export function fakeServer(routes = {}) {
  const requests = [];
  const fetch = async (request) => {
    const url = new URL(request.url);
    const text = await request.text();
    const path = url.pathname.startsWith(API) ? url.pathname.slice(API.length) : url.pathname;
    requests.push({
      method: request.method,
      path,
      search: url.search,
      body: text ? JSON.parse(text) : undefined,
      headers: request.headers,
    });
    const route = routes[`${request.method} ${path}`];
    const [status, body] = route
      ? typeof route === "function"
        ? route(text ? JSON.parse(text) : undefined)
        : route
      : [404, "<html>404: Not Found</html>"];
    const html = typeof body === "string";
    return new Response(html ? body : JSON.stringify(body), {
      status,
      headers: { "Content-Type": html ? "text/html" : "application/json" },
    });
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: BASE,
    wsUrl: "ws://localhost:8888/lab-base/",
    token: "secret-token",
    fetch,
    Request,
    Headers,
    WebSocket: FakeSocket,
  });
  return { settings, requests };
}
