//! `cargo xtask fuzz [--minutes N]`: every fuzz target in turn, N minutes in
//! all (10 by default), seeded with the example messages of
//! docs/protocol.md and of the seed documents; prints what each run did
//! (executions, corpus, coverage) as the table in docs/reliability.md.
//! `cargo xtask ci` runs each target for a few seconds ([`ci`]).
//!
//! The targets build on the pinned nightly (cargo-fuzz passes unstable
//! flags) with overflow checks and debug assertions on, so an arithmetic
//! overflow is a crash too. A crash stops the run and names the input.

use std::{fmt::Write as _, process::Command, time::Instant};

use crate::shell::{Result, describe, exec, nightly_cargo, root};

struct Target {
    name: &'static str,
    /// Longest input libFuzzer makes.
    max_len: usize,
    /// The target's seed inputs from the example messages.
    seeds: fn(&[String]) -> Vec<Vec<u8>>,
}

const TARGETS: &[Target] = &[
    // Any text, decoded by both sides and fed to a live session.
    Target {
        name: "decode",
        max_len: 4096,
        seeds: |messages| messages.iter().map(|m| m.clone().into_bytes()).collect(),
    },
    // Scripts of frames, timers, closes and calls (fuzz_targets/session.rs).
    Target {
        name: "session",
        max_len: 8192,
        seeds: |messages| {
            let prelude = "!sub gift-list:family-123\n!sub doc:*\n!open\n{\"type\":\"connected\",\"epoch\":\"e1\"}\n";
            messages
                .iter()
                .map(|m| format!("{prelude}{m}\n!close 1001 bye\n!advance 1000\n!open\n").into_bytes())
                .collect()
        },
    },
    // Scripts of connections and client frames (fuzz_targets/server.rs).
    Target {
        name: "server",
        max_len: 8192,
        seeds: |messages| {
            let connect = "!connect $T{\"sub\":\"u-1\",\"exp\":4102444800,\"publish\":[\"*\"]}$\n";
            messages.iter().map(|m| format!("{connect}{m}\n").into_bytes()).collect()
        },
    },
    // Tokens and claims (fuzz_targets/token.rs): only the committed seeds.
    Target { name: "token", max_len: 2048, seeds: |_| Vec::new() },
];

/// How long `cargo xtask ci` runs each target.
const CI_SECONDS: u64 = 15;

pub(crate) fn run(args: &[String]) -> Result {
    let minutes = match args {
        [] => 10,
        [flag, n] if flag == "--minutes" => {
            n.parse::<u64>().map_err(|_| format!("--minutes takes a number, not {n:?}"))?
        }
        _ => return Err("usage: cargo xtask fuzz [--minutes N]".into()),
    };
    crate::install::fuzz_tools()?;
    let seconds = (minutes * 60 / TARGETS.len() as u64).max(1);
    let report = fuzz_all(seconds)?;
    println!("\n{report}");
    Ok(())
}

/// Builds every target and runs each briefly: a crash found here fails CI.
pub(crate) fn ci() -> Result {
    let report = fuzz_all(CI_SECONDS)?;
    eprintln!("\n{report}");
    Ok(())
}

/// Runs every target for `seconds`; returns the table of what each did.
fn fuzz_all(seconds: u64) -> Result<String> {
    exec(&mut fuzz(&["build"]))?;
    let messages = messages()?;
    let mut table = String::from(
        "| target | seconds | executions | executions/s | corpus (inputs) | coverage (edges) | crashes |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for target in TARGETS {
        let stats = fuzz_one(target, &messages, seconds)?;
        let _ = writeln!(
            table,
            "| `{}` | {seconds} | {} | {} | {} | {} | 0 |",
            target.name,
            stats.executions,
            stats.executions / seconds.max(1),
            stats.corpus,
            stats.coverage
        );
    }
    Ok(table)
}

/// `cargo fuzz <args>` with the flags every build and run share (a run with
/// other flags would rebuild), placed before the `--` that starts
/// libFuzzer's own.
fn fuzz(args: &[&str]) -> Command {
    // cargo-fuzz (installed with stable cargo) passes nightly-only flags:
    // it runs on the pinned nightly, which `install` installed.
    let (ours, libfuzzer) = args.split_at(args.iter().position(|a| *a == "--").unwrap_or(args.len()));
    let mut command = nightly_cargo();
    command.arg("fuzz").args(ours).arg("--debug-assertions").args(libfuzzer);
    command
}

struct Stats {
    executions: u64,
    corpus: u64,
    coverage: u64,
}

fn fuzz_one(target: &Target, messages: &[String], seconds: u64) -> Result<Stats> {
    // The first directory collects what the run finds (ignored by git) and
    // gets the seeds from the docs, which change with them; the second holds
    // the committed seeds, crashes found before among them.
    let corpus = format!("fuzz/corpus/{}", target.name);
    let committed = format!("fuzz/seeds/{}", target.name);
    std::fs::create_dir_all(root().join(&corpus)).map_err(|e| e.to_string())?;
    for seed in (target.seeds)(messages) {
        let path = root().join(&corpus).join(format!("seed-{:016x}", fnv(&seed)));
        std::fs::write(path, seed).map_err(|e| e.to_string())?;
    }
    let dictionary = root().join("fuzz/protocol.dict");
    let mut command = fuzz(&["run", target.name, &corpus, &committed, "--"]);
    command.args([
        format!("-max_total_time={seconds}"),
        format!("-max_len={}", target.max_len),
        format!("-dict={}", dictionary.display()),
        "-print_final_stats=1".into(),
    ]);
    let line = describe(&command);
    eprintln!("\n$ {line}");
    let started = Instant::now();
    let output = command.output().map_err(|e| format!("could not start `{line}`: {e}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        return Err(format!(
            "fuzz target {} failed ({}): the input is in fuzz/artifacts/{}/; replay it with `rustup run {} cargo fuzz run --debug-assertions {} <file>`, then make it a regression test (fuzz/README.md)",
            target.name,
            output.status,
            target.name,
            crate::install::NIGHTLY,
            target.name
        ));
    }
    let stats = Stats {
        executions: stat(&log, "stat::number_of_executed_units:").unwrap_or(0),
        corpus: status(&log, "corp: ").unwrap_or(0),
        coverage: status(&log, "cov: ").unwrap_or(0),
    };
    eprintln!(
        "  {}: {} executions, corpus {} inputs, coverage {} edges ({:.0} s)",
        target.name,
        stats.executions,
        stats.corpus,
        stats.coverage,
        started.elapsed().as_secs_f64()
    );
    Ok(stats)
}

/// A `stat::name: N` line of libFuzzer's final statistics.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines().find_map(|line| line.strip_prefix(name)).and_then(|n| n.trim().parse().ok())
}

/// A number of libFuzzer's last status line (`#N DONE cov: .. corp: ..`).
fn status(log: &str, field: &str) -> Option<u64> {
    let line = log.lines().rev().find(|line| line.starts_with('#') && line.contains(field))?;
    let after = &line[line.find(field)? + field.len()..];
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// FNV-1a: stable file names for seeds, so reruns overwrite rather than add.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3))
}

/// The example messages: every JSON object in docs/protocol.md (its `..`
/// placeholders made empty), and fuzz/seeds/documents.txt, the seed
/// documents' examples.
fn messages() -> Result<Vec<String>> {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).map_err(|e| format!("{path}: {e}"));
    let mut messages = json_objects(&read("docs/protocol.md")?);
    let documents = read("fuzz/seeds/documents.txt")?;
    messages.extend(documents.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
    if messages.len() < 20 {
        return Err(format!("only {} example messages found: did docs/protocol.md change its format?", messages.len()));
    }
    Ok(messages)
}

/// The outermost JSON objects in `text`, as written, each on one line.
fn json_objects(text: &str) -> Vec<String> {
    let text = text.replace("{..}", "{}").replace("[..]", "[]");
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = text[at..].find('{').map(|i| at + i) {
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
        match values.next() {
            Some(Ok(value)) if value.is_object() => {
                let end = start + values.byte_offset();
                found.push(text[start..end].lines().map(str::trim).collect());
                at = end;
            }
            _ => at = start + 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_yield_their_example_messages_whole_and_once() {
        let text =
            "a `{\"type\":\"ping\"}` and\n```json\n{\"topic\":\"a:1\",\"data\":{..},\n \"seq\":2}\n```\n{not json}";
        assert_eq!(json_objects(text), [r#"{"type":"ping"}"#, r#"{"topic":"a:1","data":{},"seq":2}"#]);
    }

    #[test]
    fn cargo_fuzz_gets_its_flags_and_libfuzzer_its_own() {
        let run = describe(&fuzz(&["run", "token", "fuzz/corpus/token", "--", "-max_len=9"]));
        assert!(run.ends_with("fuzz run token fuzz/corpus/token --debug-assertions -- -max_len=9"), "{run}");
        assert!(describe(&fuzz(&["build"])).ends_with("fuzz build --debug-assertions"));
    }

    #[test]
    fn libfuzzer_statistics_are_read_from_its_log() {
        let log = "#1024 pulse cov: 10 ft: 12 corp: 3/40b\n#99999 DONE cov: 1234 ft: 3000 corp: 456/78Kb lim: 4096 exec/s: 3333 rss: 80Mb\nstat::number_of_executed_units: 99999\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(99999));
        assert_eq!(status(log, "cov: "), Some(1234));
        assert_eq!(status(log, "corp: "), Some(456));
    }

    #[test]
    fn docs_and_documents_give_enough_seeds() {
        let messages = messages().unwrap();
        assert!(messages.iter().any(|m| m.contains("\"subscribed\"")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("\"notification\"")), "the seed documents' messages");
        assert!(root().join("fuzz/seeds/token").is_dir());
    }
}
