//! Destination patterns for subscriptions.
//!
//! `/` and `.` both separate segments, so `/topic/chat.room.1` and `/topic/chat/room/1`
//! are read the same way by a pattern. `*` matches exactly one segment; `**` (or
//! RabbitMQ's `#`) matches any number, including none. A pattern without wildcards
//! is exact and is stored in the broker's hash map instead of being matched.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Many,
}

impl Pattern {
    /// `None` when `destination` has no wildcard (an exact subscription).
    pub(crate) fn parse(destination: &str) -> Option<Pattern> {
        if !is_wildcard(destination) {
            return None;
        }
        let segments = split(destination)
            .map(|s| match s {
                "*" => Segment::One,
                "**" | "#" => Segment::Many,
                lit => Segment::Literal(lit.to_owned()),
            })
            .collect();
        Some(Pattern { segments })
    }

    pub(crate) fn matches(&self, destination: &str) -> bool {
        let parts: Vec<&str> = split(destination).collect();
        match_from(&self.segments, &parts)
    }
}

pub(crate) fn is_wildcard(destination: &str) -> bool {
    split(destination).any(|s| s == "*" || s == "**" || s == "#")
}

fn split(destination: &str) -> impl Iterator<Item = &str> {
    destination.split(['/', '.'])
}

fn match_from(pattern: &[Segment], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((Segment::Many, rest)) => {
            (0..=parts.len()).any(|skip| match_from(rest, &parts[skip..]))
        }
        Some((seg, rest)) => match parts.split_first() {
            None => false,
            Some((part, more)) => {
                let ok = match seg {
                    Segment::One => true,
                    Segment::Literal(l) => l == part,
                    Segment::Many => unreachable!(),
                };
                ok && match_from(rest, more)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, d: &str) -> bool {
        Pattern::parse(p).expect("wildcard").matches(d)
    }

    #[test]
    fn single_and_multi_segment_wildcards() {
        assert!(m("/topic/*", "/topic/a"));
        assert!(!m("/topic/*", "/topic/a/b"));
        assert!(m("/topic/**", "/topic/a/b.c"));
        assert!(m("/topic/**", "/topic"));
        assert!(m("/topic/chat.*", "/topic/chat.room"));
        assert!(m("/topic/chat.*", "/topic/chat/room"));
        assert!(m("/topic/*/price", "/topic/aapl/price"));
        assert!(!m("/topic/*/price", "/topic/aapl/volume"));
        assert!(m("/topic/#.price", "/topic/us.aapl.price"));
        assert!(!m("/queue/*", "/topic/a"));
        assert!(Pattern::parse("/topic/a").is_none());
    }
}
