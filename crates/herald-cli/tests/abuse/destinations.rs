//! Wildcard patterns built to make matching explode: a matcher that tries every
//! split of a destination per `**` takes hours for these. They are refused at
//! SUBSCRIBE (naming the wildcard or segment limit), or matched at once.

use herald_stomp::{Command, Frame};

use crate::harness::{Herald, PROMPT, Watch, message_of, serial};
use crate::stomp::send;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_built_to_explode_are_refused_or_matched_at_once() {
    let _serial = serial().await;
    let mut herald = Herald::start().await;
    let watch = Watch::start("wildcards", &herald).await;
    for (stars, segments) in [(10, 26), (16, 60)] {
        let mut attacker = herald.attacker(false).await;
        let pattern = format!("/topic{}/zzz", "/**".repeat(stars));
        attacker
            .send(
                &Frame::new(Command::Subscribe)
                    .header("id", "evil")
                    .header("destination", pattern)
                    .header("receipt", "subscribed"),
            )
            .await
            .unwrap();
        let answer = attacker.recv(PROMPT).await.unwrap().expect("an answer");
        if answer.command == Command::Error {
            let text = message_of(&answer);
            assert!(
                text.contains("wildcard") || text.contains("segment"),
                "{stars} `**`: {text}"
            );
            continue;
        }
        assert_eq!(answer.command, Command::Receipt, "{answer:?}");
        let long = format!("/topic{}", "/a".repeat(segments));
        attacker
            .send(&send(&long, "x").header("receipt", "sent"))
            .await
            .unwrap();
        let answer = attacker
            .recv(PROMPT)
            .await
            .unwrap_or_else(|e| panic!("{stars} `**`, {segments} segments: {e}"))
            .expect("an answer");
        match answer.command {
            Command::Receipt => {}
            Command::Error => assert!(message_of(&answer).contains("segment"), "{answer:?}"),
            _ => panic!("{answer:?}"),
        }
    }
    watch.finish(&mut herald, 32).await;
}
