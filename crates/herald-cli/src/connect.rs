//! Connection flags shared by `listen` and `publish`.

use clap::{Args, ValueEnum};
use herald_client::{AuthMode, Client, ClientBuilder};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Auth {
    /// `?token=` on the URL (what most servers expect).
    Query,
    /// A first `{"type":"auth"}` message (keeps the token out of URLs and logs).
    Message,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The server's WebSocket URL.
    #[arg(long, env = "HERALD_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub(crate) url: String,
    /// The bearer token (with `herald serve --dev`, any name works).
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// How the token is sent.
    #[arg(long, value_enum, default_value_t = Auth::Query)]
    pub(crate) auth: Auth,
}

impl ConnectArgs {
    pub(crate) fn builder(&self) -> ClientBuilder {
        let mut builder = Client::builder(&self.url).auth_mode(match self.auth {
            Auth::Query => AuthMode::Query,
            Auth::Message => AuthMode::FirstMessage,
        });
        if let Some(token) = &self.token {
            builder = builder.token(token.clone());
        }
        builder
    }
}
