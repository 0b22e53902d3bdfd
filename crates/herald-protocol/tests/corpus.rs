//! Both decoders of server messages — serde's, and the browser's `JSON.parse`
//! in wasm — against one corpus and one record of what each frame decodes to
//! (`corpus/server.txt`, `corpus/server.golden`). Natively,
//! `HERALD_BLESS=1 cargo test -p herald-protocol --test corpus` rewrites the
//! record after an intended change; in wasm the test only compares.

use herald_protocol::{ProtocolError, ServerMessage};

const FRAMES: &str = include_str!("corpus/server.txt");
const GOLDEN: &str = include_str!("corpus/server.golden");

fn outcome(frame: &str) -> String {
    match ServerMessage::decode(frame) {
        Ok(message) => format!("ok {message:?}"),
        Err(error) => format!(
            "err {}",
            match error {
                ProtocolError::Json(_) => "not JSON".to_owned(),
                ProtocolError::NotAnObject => "not an object".to_owned(),
                ProtocolError::Fields { kind, .. } => format!("fields of {kind}"),
                other => format!("{other}"),
            }
        ),
    }
}

fn frames() -> impl Iterator<Item = &'static str> {
    FRAMES.lines().filter(|line| !line.is_empty() && !line.starts_with("# "))
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_frame_of_the_corpus_decodes_as_recorded() {
    let outcomes: Vec<String> = frames().map(outcome).collect();
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("HERALD_BLESS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/server.golden");
        std::fs::write(path, outcomes.join("\n") + "\n").expect("write the golden file");
        return;
    }
    let golden: Vec<&str> = GOLDEN.lines().collect();
    assert_eq!(outcomes.len(), golden.len(), "server.golden is out of date: bless it (see the module docs)");
    for ((frame, got), want) in frames().zip(&outcomes).zip(golden) {
        assert_eq!(got, want, "frame {frame}");
    }
}
