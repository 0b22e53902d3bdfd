// The README's React example is test/app/readme-example.jsx, which the
// browser tests render, and so is the repository README's: this keeps them
// from drifting apart.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';

const read = (path) => readFile(new URL(path, import.meta.url), 'utf8');

test('the README shows test/app/readme-example.jsx verbatim, in ten lines', async () => {
  const [readme, example] = await Promise.all([read('../README.md'), read('./app/readme-example.jsx')]);
  assert.ok(readme.includes('```jsx\n' + example + '```\n'), 'README.md has a ```jsx block with exactly the example file');
  assert.equal(example.trimEnd().split('\n').length, 10, 'the example is ten lines');
});

test('the repository README shows the same example', async () => {
  const [readme, example] = await Promise.all([read('../../README.md'), read('./app/readme-example.jsx')]);
  assert.ok(readme.includes('```jsx\n' + example + '```\n'), 'README.md at the root has the example verbatim');
});

test('the README shows the Vitest and Jest recipes as CI runs them', async () => {
  const readme = await read('../README.md');
  const [vitestTest, vitestConfig, jestTest, jestConfig, babelConfig] = await Promise.all(
    ['vitest/gift.test.jsx', 'vitest/vitest.config.js', 'jest/gift.test.jsx', 'jest/jest.config.js', 'jest/babel.config.js'].map((file) =>
      read(`../consumers/${file}`),
    ),
  );
  assert.ok(readme.includes('```jsx\n' + vitestTest + '```\n'), 'the Vitest test verbatim');
  assert.ok(readme.includes(`\`vitest.config.js\`: \`${vitestConfig.trim()}\``), 'the Vitest config verbatim');
  assert.equal(jestTest, vitestTest.replace("import { expect, test } from 'vitest';\n", ''), "Jest's test is Vitest's without the import");
  assert.ok(readme.includes('```js\n' + jestConfig + '```\n'), 'the Jest config verbatim');
  assert.ok(readme.includes('```js\n' + babelConfig + '```\n'), 'the Babel config verbatim');
});
