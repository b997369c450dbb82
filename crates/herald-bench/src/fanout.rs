//! `fanout`: one publisher, N subscribers of one topic.

use anyhow::Result;
use clap::Args;

use crate::pubsub::{self, Group, LoadArgs};
use crate::stats::Report;
use crate::Common;

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Subscriber connections, all on the one destination.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    #[arg(long, default_value = "/topic/bench")]
    pub destination: String,
}

pub async fn run(a: &FanoutArgs) -> Result<Report> {
    let groups = vec![Group {
        destination: a.destination.clone(),
        subscribers: a.subscribers,
    }];
    pubsub::run("fanout", a.common.target()?, &a.load, groups, a.common.pid).await
}
