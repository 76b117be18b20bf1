// ESLint for the front end: recommended rules for the framework-free views and widgets (JS) and the
// JupyterLab plugin (TypeScript, type-aware as in the JupyterLab extension template).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["lib/**", "mistudio_jupyter/**", "node_modules/**", ".venv/**", "js/views/options.js"] },
  js.configs.recommended,
  {
    files: ["js/**/*.js", "*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser, ...globals.node } },
  },
  {
    files: ["js/lab/**/*.ts"],
    extends: [tseslint.configs.recommended],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { args: "none" }],
      "@typescript-eslint/no-namespace": "off", // JupyterLab's CommandIDs convention
    },
  },
);
