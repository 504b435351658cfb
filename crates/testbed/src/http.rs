//! A plain HTTP/1.0 GET from inside a namespace: enough for introspection and metrics, which listen on
//! addresses only the node namespace can reach.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::netns::in_netns;
use crate::{Result, setup_error};

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, as sent.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| setup_error("response is not JSON", format!("{e}: {}", self.body)))
    }

    /// A header's value (name compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}\n{}", self.status, self.body)
    }
}

/// GETs `path` from `address` inside the namespace `netns` (any namespace: a node's companion, a pod).
pub fn get(netns: &str, address: SocketAddr, path: &str) -> Result<HttpResponse> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let raw = in_netns(netns, move || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(raw)
    })?
    .map_err(|e| setup_error(format!("GET http://{address}{path} in {netns}"), e))?;
    parse(&raw).ok_or_else(|| {
        setup_error(
            format!("GET http://{address}{path}"),
            format!("not an HTTP response: {}", String::from_utf8_lossy(&raw)),
        )
    })
}

fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_body() {
        let response = parse(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such path")
            .unwrap_or_else(|| panic!("parses"));
        assert_eq!(response.status, 404);
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.body, "no such path");
        assert!(parse(b"garbage").is_none());
    }
}
