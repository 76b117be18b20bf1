// Generated from mistudio_jupyter/core/options.py by `python -m mistudio_jupyter.core.options js/views/options.js`: do not edit.
export const STATUSES = ["pending", "downloading", "ready", "cancelled", "failed", "interrupted"];
export const ACTIVE_STATUSES = ["pending", "downloading"];
export const RESUMABLE_STATUSES = ["cancelled", "failed", "interrupted"];
export const QUANTIZATIONS = ["none", "bnb-8bit", "bnb-4bit"];
export const LOAD_OPTIONS = [{"name": "fp32", "label": "fp32", "on_entry": true}, {"name": "fp16", "label": "fp16", "on_entry": true}, {"name": "bf16", "label": "bf16", "on_entry": true}, {"name": "bnb-8bit", "label": "8-bit (bnb)", "on_entry": true}, {"name": "bnb-4bit", "label": "4-bit (bnb)", "on_entry": true}, {"name": "bnb-4bit-dq", "label": "4-bit, double quant (bnb)", "on_entry": false}];
