//! Herald's browser client: the same sans-IO session as the native client
//! (`herald-core`), driven by the browser's `WebSocket`, timers and page
//! lifecycle events, exported to JavaScript with wasm-bindgen. It ships as
//! the npm package `@herald/realtime` (see `pkg/`).
//!
//! ```js
//! import { HeraldClient } from '@herald/realtime';
//!
//! const client = new HeraldClient({ url: 'wss://example.com/ws', getToken: () => fetchToken() });
//! const stop = client.subscribe('gift-list:family-123', (message) => {
//!   if (message.type === 'resync') refetchEverything();  // events may have been missed
//!   else invalidate(message.data.entity_id);             // an event, in the seed's shape
//! });
//! ```
//!
//! The cargo feature `shared-tabs` adds `SharedTabs`, the rules of a
//! browser's tabs sharing one connection. The package ships two builds,
//! without and with it, and a page loads the second only for a client with
//! `shareAcrossTabs`, so that no other page downloads those rules.
//!
//! Everything here is for `wasm32-unknown-unknown`; on other targets the
//! crate is empty.
#![deny(missing_docs)]
#![cfg(target_arch = "wasm32")]

mod client;
mod js;
mod options;
#[cfg(feature = "shared-tabs")]
mod shared;
mod transport;

pub use client::HeraldClient;
#[cfg(feature = "shared-tabs")]
pub use shared::SharedTabs;

// Talc rather than the standard library's dlmalloc: a smaller module for
// the package's size budget (BENCHMARKS.md, "Browser package size"), and
// faster. The browser build is single-threaded (no `atomics`), which this
// allocator's cell assumes.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
