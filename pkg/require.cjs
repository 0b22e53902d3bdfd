// What `require('@herald/realtime')` (and its /react and /testing entries)
// runs. The package is ES modules only: a CommonJS build would add nothing
// where require() loads ES modules (Node 20.19+, 22.12+, bundlers), and
// where it cannot, the error says what to do instead of a cryptic one.
'use strict';

module.exports = function load(entry, name) {
  try {
    return entry();
  } catch (error) {
    if (error?.code !== 'ERR_REQUIRE_ESM' && !(error instanceof SyntaxError)) throw error;
    throw new Error(
      `${name} is ES modules only, and this runtime could not require() it: use \`import\` (from CommonJS: \`await import('${name}')\`), ` +
        "run Node 20.19 or newer, or with Jest transform it (transformIgnorePatterns: ['/node_modules/(?!@herald/realtime)'], see the package README)",
      { cause: error },
    );
  }
};
