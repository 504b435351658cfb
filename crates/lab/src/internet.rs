//! The lab's internet: a what-is-my-IP HTTP service (as `curl ipinfo.io/ip` in the articles) that answers
//! with the caller's address as it arrives, and a small HTTP GET client for namespaces without curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;

use crate::LabError;
use crate::spec::{INTERNET_IP, INTERNET_IP_V6, INTERNET_PORT};

/// The service's URL.
pub fn service_url() -> String {
    if INTERNET_PORT == 80 {
        format!("http://{INTERNET_IP}/")
    } else {
        format!("http://{INTERNET_IP}:{INTERNET_PORT}/")
    }
}

/// The service's URL over IPv6 (IPv6 labs).
pub fn service_url_v6() -> String {
    if INTERNET_PORT == 80 {
        format!("http://[{INTERNET_IP_V6}]/")
    } else {
        format!("http://[{INTERNET_IP_V6}]:{INTERNET_PORT}/")
    }
}

/// Serves what-is-my-IP on every address of `listen` (IPv4 and, in IPv6 labs, IPv6) until SIGTERM or
/// SIGINT: `GET /` answers the caller's address and a newline, as ipinfo.io/ip does.
pub fn serve(listen: &[SocketAddr]) -> Result<(), LabError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Spec(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let app = Router::new().fallback(get(|ConnectInfo(caller): ConnectInfo<SocketAddr>| async move {
            tracing::info!(%caller, "GET");
            format!("{}\n", caller.ip().to_canonical())
        }));
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        for address in listen {
            let address = *address;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| LabError::Spec(format!("cannot listen on {address}: {e}")))?;
            let mut stopped = stop.subscribe();
            let app = app.clone();
            servers.spawn(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move {
                        // A dropped sender stops the server as well as `true` does.
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
                    .map_err(|e| LabError::Spec(format!("what-is-my-IP service on {address}: {e}")))
            });
            tracing::info!(listen = %address, "what-is-my-IP serving");
        }
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| LabError::Spec(format!("cannot watch SIGTERM: {e}")))?;
        let failed = tokio::select! {
            _ = terminate.recv() => None,
            _ = tokio::signal::ctrl_c() => None,
            Some(ended) = servers.join_next() => Some(ended),
        };
        stop.send_replace(true);
        while servers.join_next().await.is_some() {}
        match failed {
            Some(Ok(Err(error))) => Err(error),
            Some(Err(panicked)) => Err(LabError::Spec(format!("what-is-my-IP service: {panicked}"))),
            Some(Ok(Ok(()))) | None => Ok(()),
        }
    })
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an `http://host[:port]/path` URL.
    #[error("{0:?} is not an http:// URL with a numeric or resolvable host")]
    BadUrl(String),
    /// Connecting, sending or reading failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server answered something other than 200.
    #[error("{url}: {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
}

/// GETs `url` (plain HTTP/1.0) with `timeout` for connecting and for each read; returns the body.
pub fn http_get(url: &str, timeout: Duration) -> Result<String, FetchError> {
    let bad = || FetchError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    // `host`, `[v6]` get port 80; `host:port`, `[v6]:port` keep theirs.
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    let address = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(bad)?;
    let io = |source| FetchError::Io {
        url: url.to_owned(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: vpcnictl-lab\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response).map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: status.to_owned(),
        });
    }
    Ok(body.to_owned())
}
