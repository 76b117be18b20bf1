// Generated from mistudio_jupyter/core/options.py by `python -m mistudio_jupyter.core.options js/views/options.js`: do not edit.
export const STATUSES = ["pending", "downloading", "ready", "cancelled", "failed", "interrupted"];
export const ACTIVE_STATUSES = ["pending", "downloading"];
export const RESUMABLE_STATUSES = ["cancelled", "failed", "interrupted"];
export const QUANTIZATIONS = ["none", "bnb-8bit", "bnb-4bit"];
