// typescript-eslint with type information, and Prettier for layout.
// Type-aware rules are the reason for this choice over Biome: a daemon that
// answers every request from promises lives or dies by no-floating-promises
// and no-misused-promises, which need the type checker.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'debian/', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Deliberately discarded promises are marked with `void`.
      // node:test's test() and describe() return promises the runner awaits itself.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // Off, with a reason: an async method without await is how a class
      // implements a promise-returning interface synchronously (MemoryStore
      // behind ThrottleStore, backends' reload/close); the alternative,
      // Promise.resolve() by hand, says the same thing with more noise.
      '@typescript-eslint/require-await': 'off',
      // Unused arguments are named with a leading underscore when an interface needs them.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The bin/ launchers are plain CommonJS that require the built code.
    files: ['bin/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      sourceType: 'commonjs',
      parserOptions: { projectService: false },
      globals: { require: 'readonly', process: 'readonly', __dirname: 'readonly' },
    },
    // A launcher's one job is to require() the built entry point.
    rules: { ...tseslint.configs.disableTypeChecked.rules, '@typescript-eslint/no-require-imports': 'off' },
  },
  prettier,
);
