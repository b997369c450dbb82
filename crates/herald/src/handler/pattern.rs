//! Path patterns: `/chat.send`, `/chat/rooms/{id}/send`, `/orders/**`.
//! Application paths split segments on `/`; destination patterns (for access rules)
//! split on `/` and `.` like the broker does, so a rule sees the same segments a
//! wildcard subscription does. `{name}` captures one segment, `*` matches one, `**`
//! (last) matches the rest.

use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(String),
    Any,
    Rest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    separators: &'static [char],
}

impl PathPattern {
    /// An application path pattern (segments split on `/`).
    pub fn parse(pattern: &str) -> PathPattern {
        PathPattern::with_separators(pattern, &['/'])
    }

    /// A destination pattern (segments split on `/` and `.`).
    pub fn destination(pattern: &str) -> PathPattern {
        PathPattern::with_separators(pattern, &['/', '.'])
    }

    fn with_separators(pattern: &str, separators: &'static [char]) -> PathPattern {
        let segments = pattern
            .trim_start_matches('/')
            .split(separators)
            .map(|s| match s {
                "*" => Segment::Any,
                "**" => Segment::Rest,
                s if s.starts_with('{') && s.ends_with('}') && s.len() > 2 => {
                    Segment::Var(s[1..s.len() - 1].to_owned())
                }
                s => Segment::Literal(s.to_owned()),
            })
            .collect();
        PathPattern {
            source: format!("/{}", pattern.trim_start_matches('/')),
            segments,
            separators,
        }
    }

    /// The path variables when `path` matches.
    pub fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .split(self.separators)
            .collect();
        let mut params = HashMap::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if *seg == Segment::Rest {
                return Some(params);
            }
            let part = parts.get(i)?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Var(name) if !part.is_empty() => {
                    params.insert(name.clone(), (*part).to_owned());
                }
                Segment::Any if !part.is_empty() => {}
                _ => return None,
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_variables_and_rest() {
        let p = PathPattern::parse("/chat/rooms/{id}/send");
        assert_eq!(p.matches("/chat/rooms/7/send").unwrap()["id"], "7");
        assert!(p.matches("/chat/rooms//send").is_none());
        assert!(p.matches("/chat/rooms/7/send/x").is_none());
        assert!(
            PathPattern::parse("/chat.send")
                .matches("/chat.send")
                .is_some()
        );
        assert!(
            PathPattern::parse("/chat.send")
                .matches("/chat.sen")
                .is_none()
        );
        assert!(PathPattern::parse("/**").matches("/any/thing").is_some());
        assert!(
            PathPattern::parse("/orders/*")
                .matches("/orders/1")
                .is_some()
        );
        let d = PathPattern::destination("/topic/admin/**");
        assert!(d.matches("/topic/admin.evil").is_some());
        assert!(
            PathPattern::destination("/user/{user}/**")
                .matches("/user/bob.x/q")
                .unwrap()["user"]
                == "bob"
        );
    }
}
