// The code that "Insert into notebook" writes: load the model, capture the picked hooks on a prompt.

/** The code of the inserted cell (Python string literals written as JSON, which Python reads alike). */
export function hooksCell(modelId: string, modelName: string, hooks: string[]): string {
  const names = hooks.map((name) => `    ${JSON.stringify(name)},`).join('\n');
  return [
    `# Hooks picked in miStudio for ${modelName.replace(/\s+/g, ' ')}`,
    'from mistudio_jupyter import ModelManager, capture',
    '',
    `hooks = [\n${names}\n]`,
    `model, tokenizer = ModelManager().load(${JSON.stringify(modelId)})`,
    'inputs = tokenizer("The quick brown fox jumps over the lazy dog", return_tensors="pt").to(model.device)',
    'with capture(model, hooks) as activations:',
    '    model(**inputs)',
    '{name: tuple(tensor.shape) for name, tensor in activations.items()}',
  ].join('\n');
}
