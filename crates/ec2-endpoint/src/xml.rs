//! A tiny XML writer: EC2's answers are flat element trees of text, so a builder with escaping is all
//! that is needed.

/// Namespace of EC2's 2016-11-15 API.
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Escapes text for element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// An element being written.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        let text = escape(&text.to_string());
        self.out.push_str(&format!("<{name}>{text}</{name}>"));
        self
    }

    /// Bare text inside the current element (a list of plain values: `<item>text</item>`).
    pub fn out_text(&mut self, text: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(&escape(&text.to_string()));
        self
    }

    /// `<name>text</name>` if present.
    pub fn opt(&mut self, name: &str, text: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(text) = text {
            self.text(name, text);
        }
        self
    }

    /// `<name>…</name>` with children written by `inner`.
    pub fn node(&mut self, name: &str, inner: impl FnOnce(&mut Xml)) -> &mut Self {
        self.out.push_str(&format!("<{name}>"));
        inner(self);
        self.out.push_str(&format!("</{name}>"));
        self
    }

    /// `<name><item>…</item>…</name>`.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.node(name, |xml| {
            for item in items {
                xml.node("item", |xml| each(xml, item));
            }
        })
    }

    /// The document: `<Action>Response xmlns=…><requestId>…</requestId>…</…>`.
    pub fn response(action: &str, request_id: &str, body: Xml) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{EC2_NAMESPACE}\"><requestId>{request_id}</requestId>{}</{action}Response>",
            body.out
        )
    }
}

/// EC2's error document.
pub fn error_document(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        escape(code),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
        let mut xml = Xml::new();
        xml.text("description", "<script>");
        assert_eq!(xml.out, "<description>&lt;script&gt;</description>");
    }
}
