//! Names the platform split once: `wasm_browser` is a browser build
//! (`wasm32-unknown-unknown`), where the browser's `JSON.parse` stands in for
//! serde_json's parser and `Date` for the system clock. Cargo.toml's target
//! tables cannot use it (Cargo reads them before build scripts run), so they
//! spell the condition out.

fn main() {
    cfg_aliases::cfg_aliases! {
        wasm_browser: { all(target_family = "wasm", target_os = "unknown") },
    }
}
