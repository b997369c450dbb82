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
    let subscribe_to = vec![target.clone()];
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
