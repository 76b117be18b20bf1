import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EventSocket, eventsUrl } from "../lab/events.ts";
import { FakeSocket, fakeServer } from "./lab-fakes.js";

const BACKOFF = { initialMs: 100, maxMs: 350 };

describe("EventSocket", () => {
  let socket;
  let messages;
  let connection;

  beforeEach(() => {
    vi.useFakeTimers();
    FakeSocket.instances = [];
    socket = new EventSocket(fakeServer().settings, BACKOFF);
    messages = [];
    connection = [];
    socket.message.connect((_, message) => messages.push(message));
    socket.connectionChanged.connect((_, connected) => connection.push(connected));
  });

  afterEach(() => {
    socket.dispose();
    vi.useRealTimers();
  });

  it("connects to /events under the WebSocket URL, with the token", () => {
    expect(eventsUrl(fakeServer().settings)).toBe(
      "ws://localhost:8888/lab-base/mistudio/api/v1/events?token=secret-token",
    );
    socket.connect();
    socket.connect();
    expect(FakeSocket.instances.map((s) => s.url)).toEqual([eventsUrl(fakeServer().settings)]);
  });

  it("sends subscriptions once open, and new ones at once", () => {
    socket.subscribe("models");
    socket.connect();
    expect(FakeSocket.last.sent).toEqual([]);
    FakeSocket.last.open();
    socket.subscribe("model/m1");
    socket.unsubscribe("model/m1");
    expect(FakeSocket.last.sent).toEqual([
      { action: "subscribe", channel: "models" },
      { action: "subscribe", channel: "model/m1" },
      { action: "unsubscribe", channel: "model/m1" },
    ]);
    expect(connection).toEqual([true]);
  });

  it("emits each server message", () => {
    socket.connect();
    FakeSocket.last.open();
    const event = { channel: "model/m1", event: "download_progress", data: { progress: 0.5 } };
    FakeSocket.last.push(event);
    expect(messages).toEqual([event]);
  });

  it("reconnects with doubling delays up to the maximum, and re-subscribes", () => {
    socket.subscribe("models");
    socket.connect();
    FakeSocket.last.open();
    FakeSocket.last.drop();
    expect(connection).toEqual([true, false]);
    expect(socket.isConnected).toBe(false);

    const opensAfter = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const before = FakeSocket.instances.length;
      let waited = 0;
      while (FakeSocket.instances.length === before) {
        vi.advanceTimersByTime(10);
        waited += 10;
      }
      opensAfter.push(waited);
      if (attempt < 3) FakeSocket.last.drop(); // the server is still down
    }
    expect(opensAfter).toEqual([100, 200, 350, 350]);
    expect(connection).toEqual([true, false]); // no repeated "lost" while retrying

    FakeSocket.last.open();
    expect(FakeSocket.last.sent).toEqual([{ action: "subscribe", channel: "models" }]);
    expect(connection).toEqual([true, false, true]);

    FakeSocket.last.drop(); // a fresh drop starts again from the initial delay
    vi.advanceTimersByTime(100);
    expect(FakeSocket.instances).toHaveLength(6);
  });

  it("stops for good when disposed", () => {
    socket.connect();
    FakeSocket.last.open();
    const first = FakeSocket.last;
    socket.dispose();
    expect(first.readyState).toBe(3);
    vi.advanceTimersByTime(10_000);
    expect(FakeSocket.instances).toHaveLength(1);
    expect(socket.isDisposed).toBe(true);
  });
});
