//! Heart-beat negotiation (STOMP 1.1 §Heart-beating).
//!
//! The client says `cx,cy` (it can send every cx ms, wants to receive every cy ms);
//! the server has its own `sx,sy`. Each direction is off when either side says 0,
//! else the larger of the two numbers.

use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// How often the server must send something (an EOL when idle).
    pub send: Option<Duration>,
    /// How often the client promised to send; silence for two of these closes it.
    pub receive: Option<Duration>,
}

/// Parses a `heart-beat` header value `cx,cy` in milliseconds.
pub(crate) fn parse(value: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid heart-beat header '{value}': expected two integers 'cx,cy'");
    let (a, b) = value.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

pub(crate) fn negotiate(
    client: (u64, u64),
    server_send: Duration,
    server_receive: Duration,
) -> Heartbeat {
    let (cx, cy) = client;
    let dir = |server: Duration, client_ms: u64| {
        let server_ms = server.as_millis() as u64;
        (server_ms > 0 && client_ms > 0).then(|| Duration::from_millis(server_ms.max(client_ms)))
    };
    Heartbeat {
        send: dir(server_send, cy),
        receive: dir(server_receive, cx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_direction_takes_the_larger_or_is_off() {
        let s = Duration::from_millis;
        assert_eq!(
            negotiate((4000, 20000), s(10000), s(10000)),
            Heartbeat {
                send: Some(s(20000)),
                receive: Some(s(10000))
            }
        );
        assert_eq!(
            negotiate((0, 500), s(1000), s(1000)),
            Heartbeat {
                send: Some(s(1000)),
                receive: None
            }
        );
        assert_eq!(negotiate((500, 500), s(0), s(0)), Heartbeat::default());
        assert!(
            parse("1,x")
                .unwrap_err()
                .contains("invalid heart-beat header '1,x'")
        );
        assert_eq!(parse("10, 20"), Ok((10, 20)));
    }
}
