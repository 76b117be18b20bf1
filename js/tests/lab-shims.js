// jsdom lacks DragEvent, which @lumino/dragdrop (under @lumino/widgets) uses when it loads: import first.
globalThis.DragEvent ??= class DragEvent extends MouseEvent {};
