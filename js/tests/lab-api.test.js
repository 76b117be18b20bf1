import { describe, expect, it } from "vitest";
import { ServerConnection } from "@jupyterlab/services";
import { ApiError, requestAPI } from "../lab/api.ts";
import { fakeServer } from "./lab-fakes.js";

describe("requestAPI", () => {
  it("calls the API under the base URL with the token and a JSON body", async () => {
    const { settings, requests } = fakeServer({ "POST models/preview": [200, { repo_id: "tiny/gpt2" }] });
    const answer = await requestAPI(settings, "models/preview", { method: "POST", body: { repo_id: "tiny/gpt2" } });
    expect(answer).toEqual({ repo_id: "tiny/gpt2" });
    const [request] = requests;
    expect(request).toMatchObject({
      method: "POST",
      path: "models/preview",
      search: "",
      body: { repo_id: "tiny/gpt2" },
    });
    expect(request.headers.get("Authorization")).toBe("token secret-token");
    expect(request.headers.get("Content-Type")).toBe("application/json");
  });

  it("sends the _xsrf cookie back as X-XSRFToken", async () => {
    document.cookie = "_xsrf=xsrf-value";
    const { settings, requests } = fakeServer({ "GET models": [200, { models: [] }] });
    await requestAPI(settings, "models");
    expect(requests[0].headers.get("X-XSRFToken")).toBe("xsrf-value");
    document.cookie = "_xsrf=; expires=Thu, 01 Jan 1970 00:00:00 GMT";
  });

  it("raises the server extension's error with its code and message", async () => {
    const { settings } = fakeServer({
      "DELETE models/m1": [409, { error: { code: "conflict", message: "m1 is downloading" } }],
    });
    const error = await requestAPI(settings, "models/m1", { method: "DELETE" }).catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 409, code: "conflict", message: "m1 is downloading", unavailable: false });
    expect(error.toJSON()).toEqual({ code: "conflict", message: "m1 is downloading" });
  });

  it("reads Jupyter's own 404 page as a missing server extension", async () => {
    const { settings } = fakeServer();
    const error = await requestAPI(settings, "models").catch((e) => e);
    expect(error).toMatchObject({ status: 404, code: "no_extension", unavailable: true });
  });

  it("reports other non-API answers by their status", async () => {
    const { settings } = fakeServer({ "GET models": [502, "<html>Bad Gateway</html>"] });
    const error = await requestAPI(settings, "models").catch((e) => e);
    expect(error).toMatchObject({ status: 502, code: "http_error", unavailable: false });
  });

  it("reports a server that cannot be reached", async () => {
    const settings = ServerConnection.makeSettings({
      baseUrl: "http://localhost:8888/",
      fetch: () => Promise.reject(new TypeError("Failed to fetch")),
      Request,
      Headers,
    });
    const error = await requestAPI(settings, "models").catch((e) => e);
    expect(error).toMatchObject({ status: 0, code: "unreachable", unavailable: true });
  });
});
