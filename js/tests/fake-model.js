// A stand-in for the anywidget model: the same interface, records of what the view did (`sent`, `sets`,
// `saves`), and `kernelSet` to play the kernel's side.
export class FakeModel {
  constructor(state = {}) {
    this.state = structuredClone(state);
    this.listeners = new Map();
    this.sent = [];
    this.sets = [];
    this.saves = [];
    this.dirty = {};
  }

  get(name) {
    return this.state[name];
  }

  set(name, value) {
    this.sets.push([name, value]);
    this.dirty[name] = value;
    this.#change(name, value);
  }

  save_changes() {
    this.saves.push(this.dirty);
    this.dirty = {};
  }

  send(msg) {
    this.sent.push(msg);
  }

  on(event, callback) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(callback);
  }

  off(event, callback) {
    if (!event) this.listeners.clear();
    else if (!callback) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(callback);
  }

  /** Number of listeners still registered (0 after a view's cleanup). */
  listenerCount() {
    return [...this.listeners.values()].reduce((n, set) => n + set.size, 0);
  }

  /** The kernel changes a trait (not recorded as a view write). */
  kernelSet(name, value) {
    this.state[name] = structuredClone(value);
    this.#change(name, this.state[name]);
  }

  #change(name, value) {
    this.state[name] = value;
    for (const callback of [...(this.listeners.get(`change:${name}`) ?? [])]) callback(this, value);
  }
}
