//! HTTP over the mixnet: a connector that puts `hyper`'s client on [`MixnetStreams`].
//!
//! [`MixnetConnector`] opens a [`MixnetStream`] through the exit service for each connection
//! `hyper_util`'s legacy client asks for, so the client (its connection pool and keep-alive
//! included) speaks HTTP/1 to any server the exit reaches and its policy allows, with no
//! SOCKS5 proxy in between:
//!
//! ```no_run
//! # async fn example(client: umbra_sdk::MixnetClient, exit: umbra_sdk::ClientAddress) -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use umbra_sdk::StreamSettings;
//! use umbra_sdk::http::MixnetConnector;
//!
//! let (streams, client) = client.into_streams(StreamSettings::new(exit))?;
//! let http = Client::builder(TokioExecutor::new()).build(MixnetConnector::new(streams));
//! let request = hyper::Request::post("http://rpc.example.org:8545/")
//!     .header("content-type", "application/json")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#,
//!     )))?;
//! let answer = http.request(request).await?.into_body().collect().await?.to_bytes();
//! # drop((answer, client));
//! # Ok(())
//! # }
//! ```
//!
//! Host names go to the exit as they are and are resolved there, never here: no DNS request
//! leaves this machine. A URL without a port means port 80.
//!
//! Only `http://` URLs are accepted: the bytes are sealed end to end between here and the
//! exit, but the exit sees them in the clear, as does everything between it and the server.
//! For `https://`, a TLS connector that wraps an inner connector (hyper-rustls's
//! `HttpsConnector`, say) can wrap this one, given [`MixnetConnector::enforce_http`]`(false)`
//! so that `https://` URLs (port 443 by default) reach it; this crate does not test that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

use crate::{MixnetStream, MixnetStreams, OpenError};

/// Opens connections for `hyper_util::client::legacy::Client` as streams through the mixnet
/// to the exit; see the module documentation.
#[derive(Clone, Debug)]
pub struct MixnetConnector {
    streams: MixnetStreams,
    enforce_http: bool,
}

impl MixnetConnector {
    /// A connector opening its connections on `streams` (from
    /// [`crate::MixnetClient::into_streams`]).
    pub fn new(streams: MixnetStreams) -> Self {
        MixnetConnector {
            streams,
            enforce_http: true,
        }
    }

    /// Whether only `http://` URLs are accepted (default `true`). Set it to `false` when a
    /// TLS connector wraps this one and hands it `https://` URLs.
    pub fn enforce_http(mut self, enforce: bool) -> Self {
        self.enforce_http = enforce;
        self
    }
}

/// Where a connection for `uri` goes: its host and port.
fn destination(uri: &Uri, enforce_http: bool) -> Result<(String, u16), ConnectError> {
    let scheme = uri.scheme_str().ok_or(ConnectError::MissingScheme)?;
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if enforce_http {
        return Err(ConnectError::WrongScheme(scheme.to_owned()));
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    };
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or(ConnectError::MissingHost)?;
    let port = uri
        .port_u16()
        .or(default_port)
        .ok_or_else(|| ConnectError::MissingPort(scheme.to_owned()))?;
    Ok((host.to_owned(), port))
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL has no scheme.
    #[error("the URL has no scheme: give a full URL, such as http://host:port/")]
    MissingScheme,
    /// The URL's scheme is not `http`.
    #[error(
        "the URL's scheme is {0:?}, but the mixnet connector speaks only http:// (for https://, wrap it in a TLS connector and set enforce_http(false))"
    )]
    WrongScheme(String),
    /// The URL has no host.
    #[error("the URL has no host: give one, such as http://host:port/")]
    MissingHost,
    /// The URL gives no port, and its scheme has no default one.
    #[error("the URL gives no port, and its scheme {0:?} has none by default")]
    MissingPort(String),
    /// The stream through the exit could not be opened.
    #[error("opening a stream through the mixnet: {0}")]
    Open(#[from] OpenError),
}

impl tower_service::Service<Uri> for MixnetConnector {
    type Response = MixnetConnection;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<MixnetConnection, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        // the streams' own limit answers each open at once
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let destination = destination(&uri, self.enforce_http);
        let streams = self.streams.clone();
        Box::pin(async move {
            let (host, port) = destination?;
            let stream = streams.open(&host, port).await?;
            Ok(MixnetConnection {
                io: TokioIo::new(stream),
            })
        })
    }
}

/// A connection `hyper` speaks HTTP on: a [`MixnetStream`] in `hyper`'s I/O traits.
#[derive(Debug)]
pub struct MixnetConnection {
    io: TokioIo<MixnetStream>,
}

impl MixnetConnection {
    /// The stream underneath.
    pub fn into_inner(self) -> MixnetStream {
        self.io.into_inner()
    }
}

impl Connection for MixnetConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for MixnetConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for MixnetConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(uri: &str) -> Result<(String, u16), ConnectError> {
        destination(&uri.parse().unwrap(), true)
    }

    fn any(uri: &str) -> Result<(String, u16), ConnectError> {
        destination(&uri.parse().unwrap(), false)
    }

    #[test]
    fn urls_name_a_host_and_port_or_say_what_is_wrong() {
        assert_eq!(
            http("http://rpc.example.org/").unwrap(),
            ("rpc.example.org".into(), 80)
        );
        assert_eq!(
            http("HTTP://10.0.0.1:8545/x").unwrap(),
            ("10.0.0.1".into(), 8545)
        );
        assert_eq!(http("http://[::1]:8080/").unwrap(), ("[::1]".into(), 8080));
        assert!(matches!(
            http("https://example.org/"),
            Err(ConnectError::WrongScheme(scheme)) if scheme == "https"
        ));
        assert!(matches!(http("/path"), Err(ConnectError::MissingScheme)));
        assert_eq!(
            any("https://example.org/").unwrap(),
            ("example.org".into(), 443)
        );
        assert!(matches!(
            any("ftp://example.org/"),
            Err(ConnectError::MissingPort(_))
        ));
    }
}
