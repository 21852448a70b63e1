// ESLint (flat config): typescript-eslint's recommended rules, plus the project's layering
// rules, which fail `npm test`: no import cycles, src/ never imports plugins/ (only the
// composition root app/ knows the registry), no source file over 400 lines.
import tseslint from 'typescript-eslint'
import { importX } from 'eslint-plugin-import-x'
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'openresty/**', 'test/interop/go/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
      // Dependencies are parsed as TypeScript too; otherwise no-cycle cannot read them and sees no cycle.
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] }
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'import-x/no-cycle': 'error',
      'no-new': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }]
    }
  },
  {
    files: ['app/**/*.ts', 'src/**/*.ts', 'plugins/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400, skipBlankLines: false, skipComments: false }]
    }
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/plugins/**', '../plugins/*', '../../plugins/*'], message: 'src/ is the core: it never imports plugins/ (app/cli.ts composes them).' }] }]
    }
  }
)
