// The project's lint rules: ESLint's and typescript-eslint's recommended sets (no type-aware rules, so the lint
// stays a few seconds on two cores), with the exceptions this codebase relies on spelled out.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'tools/', 'data/', '.tmp/', '.scratch*/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // `_name` marks a value left unused on purpose (destructured away, an interface's parameter).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          caughtErrors: 'none',
        },
      ],
      // Control characters are what the hostile-input code looks for.
      'no-control-regex': 'off',
      // Deliberate empty catch blocks carry a comment saying why.
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    // The cpu pool's thread bootstrap (workers/cpu-thread.js): CommonJS, loaded by piscina in each thread.
    files: ['workers/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // CommonJS helpers the tests load by path (require) into worker processes.
    files: ['test/support/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
