// As the package README says: Vite's dev server pre-bundles dependencies
// into another folder, where `new URL('herald_bg.wasm', import.meta.url)`
// finds no wasm; excluded, the package is served as it is.
export default { optimizeDeps: { exclude: ['@herald/realtime'] } };
