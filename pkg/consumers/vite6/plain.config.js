// Without the README's optimizeDeps.exclude: the dev server serves a page
// instead of the wasm, and the client's status must say what to change.
export default {};
