//! `herald`: run Herald's reference server, mint tokens, listen, publish, demo.
//!
//! Each subcommand lives in its own module with a clap `Args` struct and a
//! `run` function; add a subcommand by adding a module and a variant below.

mod connect;
mod demo;
mod duration;
mod listen;
mod publish;
mod serve;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Herald: real-time pub/sub over WebSockets that keeps caches fresh.
///
/// Quick start:
///   herald serve --dev                        # insecure local server on 127.0.0.1:8080
///   herald token --secret S --user u-1        # mint a token for a server run with --secret S
///   herald listen --token me --topic gift-list:family-123
///   herald publish --token me --topic gift-list:family-123 --entity-id gift-7 --payload '{"bought":true}'
///   herald demo                               # everything in one terminal
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: the server's flags outweigh every other command's.
    Serve(Box<serve::ServeArgs>),
    Listen(listen::ListenArgs),
    Publish(publish::PublishArgs),
    Demo(demo::DemoArgs),
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Listen(args) => listen::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Token(args) => token::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
