//! `fanout`: one publisher, N subscribers of one topic. With `--subscribe-url`
//! (repeatable) the subscribers are spread round-robin over those servers (the
//! nodes of a cluster) while the publisher stays on `--url`.

use anyhow::Result;
use clap::Args;

use crate::Common;
use crate::pubsub::{self, Group, LoadArgs};
use crate::stats::Report;

#[derive(Args, Debug, Clone)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Subscriber connections, all on the one destination.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    #[arg(long, default_value = "/topic/bench")]
    pub destination: String,
    /// Server the subscribers connect to instead of --url; repeatable: subscriber i
    /// goes to the (i mod n)-th (e.g. the nodes of a cluster, --url being one of them).
    #[arg(long = "subscribe-url", value_name = "URL")]
    pub subscribe_urls: Vec<String>,
}

pub(crate) async fn run(a: &FanoutArgs) -> Result<Report> {
    let groups = vec![Group {
        destination: a.destination.clone(),
        subscribers: a.subscribers,
    }];
    let target = a.common.target()?;
    let subscribe_to = if a.subscribe_urls.is_empty() {
        vec![target.clone()]
    } else {
        let urls = a.subscribe_urls.iter();
        urls.map(|u| a.common.target_at(u)).collect::<Result<_>>()?
    };
    pubsub::run(
        "fanout",
        target,
        subscribe_to,
        &a.load,
        groups,
        &a.common.pid,
    )
    .await
}
