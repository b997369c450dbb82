//! `pairs`: N publishers, each with its own topic and one subscriber on it.
//! `--rate` is per publisher.

use anyhow::Result;
use clap::Args;

use crate::Common;
use crate::pubsub::{self, Group, LoadArgs};
use crate::stats::Report;

#[derive(Args, Debug, Clone)]
pub(crate) struct PairsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Publisher/subscriber pairs.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Destination prefix: pair i uses PREFIX-i.
    #[arg(long, default_value = "/topic/bench")]
    pub destination: String,
    /// Server(s) the subscribers connect to, round-robin (repeatable; default: the
    /// publishers' server): pairs across the nodes of a cluster.
    #[arg(long = "subscribe-url", value_name = "URL")]
    pub subscribe_urls: Vec<String>,
}

pub(crate) async fn run(a: &PairsArgs) -> Result<Report> {
    if a.common.raw {
        anyhow::bail!("pairs needs destinations; the floor server (--raw) only broadcasts");
    }
    let groups = (0..a.pairs)
        .map(|i| Group {
            destination: format!("{}-{i}", a.destination),
            subscribers: 1,
        })
        .collect();
    let target = a.common.target()?;
    let subscribe_to = if a.subscribe_urls.is_empty() {
        vec![target.clone()]
    } else {
        let urls = a.subscribe_urls.iter();
        urls.map(|u| a.common.target_at(u)).collect::<Result<_>>()?
    };
    pubsub::run(
        "pairs",
        target,
        subscribe_to,
        &a.load,
        groups,
        &a.common.pid,
    )
    .await
}
