//! `herald token`: mint an HS256 token.

use std::time::Duration;

use clap::Args;
use herald_server::{Claims, mint_token};

/// Mint a token (HS256 JWT) for a server started with the same secret.
///
/// Example:
///   herald token --secret "$HERALD_SECRET" --user u-1 --tenant acme --topics 'gift-list:*' --ttl 1h
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct TokenArgs {
    /// The server's secret (the same as `herald serve --secret`).
    #[arg(long, env = "HERALD_SECRET", hide_env_values = true)]
    secret: String,
    /// The user id (the `sub` claim).
    #[arg(long)]
    user: String,
    /// The user's tenant: the user then sees only events of that tenant (without it, only events without one).
    #[arg(long)]
    tenant: Option<String>,
    /// Topic patterns the user may subscribe to, e.g. `gift-list:*`, `user:42`, `*`.
    /// Comma-separated or repeated. Without it: every topic.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Topic patterns the user may publish to. Comma-separated or repeated. Without it: none.
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// A backend's token: its publishes keep the `data.user_id` they name (who triggered the
    /// change). Without it, every publish carries this token's user.
    #[arg(long)]
    on_behalf_of_users: bool,
    /// How long the token is valid: `30m`, `1h`, `3600`.
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse)]
    ttl: Duration,
}

pub(crate) fn run(args: TokenArgs) -> Result<(), String> {
    let mut claims = Claims::new(args.user, args.ttl.as_secs());
    if let Some(tenant) = args.tenant {
        claims = claims.tenant(tenant);
    }
    if !args.topics.is_empty() {
        claims = claims.topics(args.topics);
    }
    if !args.publish.is_empty() {
        claims = claims.publish(args.publish);
    }
    if args.on_behalf_of_users {
        claims = claims.on_behalf_of_users();
    }
    let token = mint_token(&args.secret, &claims).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
