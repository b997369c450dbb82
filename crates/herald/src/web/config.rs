//! `[web]`: the web UI.

use serde::{Deserialize, Serialize};

/// The web UI served from the binary (`web.rs`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// `POST /api/dev/login {sub, roles}` mints a token with the first issuer that can
    /// sign and sets it as the `auth.cookie_name` cookie: anyone can become anyone.
    /// For demos and development only; never on a server others can reach.
    pub dev_login: bool,
}
