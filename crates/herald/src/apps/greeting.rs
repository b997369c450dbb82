//! Spring's WebSocket guide's greeting: `/app/hello` {name} → `/topic/greetings`
//! {content} (under the configured prefixes).

use serde::{Deserialize, Serialize};

use super::Destinations;
use crate::handler::{HandlerError, Handlers, Reply, Request};

#[derive(Deserialize)]
pub(crate) struct HelloMessage {
    pub name: String,
}

#[derive(Serialize)]
pub(crate) struct Greeting {
    pub content: String,
}

pub(crate) fn handlers(to: &Destinations) -> Handlers {
    let greetings = to.topic("greetings");
    Handlers::new().route("/hello", move |req: Request<HelloMessage>| {
        let greetings = greetings.clone();
        async move {
            let content = format!("Hello, {}!", html_escape(&req.payload.name));
            Ok::<_, HandlerError>(Reply::to(greetings, &Greeting { content }))
        }
    })
}

/// What Spring's `HtmlUtils.htmlEscape` does for the characters that matter.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::html_escape("<b>\"Tom\" & 'Jerry'</b>"),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }
}
