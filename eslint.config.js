// ESLint (flat config): typescript-eslint's recommended rules on the TypeScript sources and tests; formatting is
// Prettier's job (eslint-config-prettier turns off the rules that would fight it).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'out/', 'runs/', 'node_modules/', 'scratch/', 'web/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    files: ['bin/**/*.js', 'scripts/**/*.js', '*.js', 'test/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Comma sequences (`(best = d), (cls = k)`) are used deliberately in the scorer's and images' tight loops.
      '@typescript-eslint/no-unused-expressions': 'off',
    },
  },
);
