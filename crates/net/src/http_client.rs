//! The one HTTP client of Umbra's shells (hyper, HTTP/1.1, a connection per request): what a
//! node, a client or the CLI asks a validator's API, and localnet its daemons' `/health`.
//!
//! Every request is bounded: in time (connecting, sending and reading the whole answer) and
//! in the size of the answer it will read. A request goes straight to its server or through a
//! SOCKS5 proxy ([`Server`]): the mixnet, for `umbra tx --proxy`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::socks5::{ProxyError, Socks5Proxy};

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through a SOCKS5 proxy (boxed: errors carry a `Server`, and stay small).
    Proxied(Box<Proxied>),
}

/// A server reached through a SOCKS5 proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proxied {
    /// The proxy.
    pub proxy: Socks5Proxy,
    /// The server's name or address; with `socks5h://` the proxy resolves a name.
    pub host: String,
    /// The server's port.
    pub port: u16,
}

impl Server {
    /// `host:port` through `proxy`.
    pub fn proxied(proxy: Socks5Proxy, host: impl Into<String>, port: u16) -> Server {
        Server::Proxied(Box::new(Proxied {
            proxy,
            host: host.into(),
            port,
        }))
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        match self {
            Server::Direct(address) => address.to_string(),
            Server::Proxied(to) if to.host.contains(':') => format!("[{}]:{}", to.host, to.port),
            Server::Proxied(to) => format!("{}:{}", to.host, to.port),
        }
    }

    async fn connect(&self) -> Result<TcpStream, HttpError> {
        match self {
            Server::Direct(address) => TcpStream::connect(address)
                .await
                .map_err(HttpError::Connect),
            Server::Proxied(to) => to
                .proxy
                .connect(&to.host, to.port)
                .await
                .map_err(HttpError::Proxy),
        }
    }
}

impl From<SocketAddr> for Server {
    fn from(address: SocketAddr) -> Server {
        Server::Direct(address)
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Direct(address) => write!(f, "{address}"),
            Server::Proxied(to) => write!(f, "{} (through {})", self.host_header(), to.proxy),
        }
    }
}

/// An answer: its status and its whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No connection to the server.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The SOCKS5 proxy could not connect to the server (or could not be reached).
    #[error("{0}")]
    Proxy(ProxyError),
    /// The exchange failed: the connection closed, or the answer is not HTTP/1.1.
    #[error("{0}")]
    Exchange(hyper::Error),
    /// The request is not one HTTP can carry (a path with spaces, say).
    #[error("not a valid request: {0}")]
    Request(hyper::http::Error),
    /// The answer's body is longer than the limit.
    #[error("the answer is longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// No whole answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What a request may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connecting, sending and reading the whole answer.
    pub timeout: Duration,
    /// The longest body read.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_body: 64 << 20,
        }
    }
}

/// `GET path` from the server at `address`.
pub async fn get(address: SocketAddr, path: &str, limits: Limits) -> Result<Response, HttpError> {
    request(address, Method::GET, path, None, limits).await
}

/// `GET path` for synchronous callers (localnet's supervisor, tests): the request runs on a
/// runtime of its own in a thread of its own, so this works inside or outside a tokio runtime
/// (and blocks the calling thread either way, for `limits.timeout` at most).
pub fn get_blocking(
    address: SocketAddr,
    path: &str,
    limits: Limits,
) -> Result<Response, HttpError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(HttpError::Connect)?;
                runtime.block_on(get(address, path, limits))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `method path` to the server at `address`, with a JSON `body` if any.
pub async fn request(
    address: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    limits: Limits,
) -> Result<Response, HttpError> {
    request_to(&Server::Direct(address), method, path, body, limits).await
}

/// `method path` to `server`, straight or through its proxy, with a JSON `body` if any.
pub async fn request_to(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    limits: Limits,
) -> Result<Response, HttpError> {
    tokio::time::timeout(
        limits.timeout,
        exchange(server, method, path, body, limits.max_body),
    )
    .await
    .map_err(|_| HttpError::Timeout(limits.timeout))?
}

async fn exchange(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    max_body: usize,
) -> Result<Response, HttpError> {
    let stream = server.connect().await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HttpError::Exchange)?;
    // drives the connection; it ends when the exchange does (or with this future's timeout)
    let driver = tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, server.host_header());
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(HttpError::Request)?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(HttpError::Exchange)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => HttpError::Exchange(*error),
                Err(_) => HttpError::TooLong { limit: max_body },
            })?
            .to_bytes()
            .to_vec();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    answer
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers one connection with `answer` after reading the request's head.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap() == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            stream.write_all(answer).await.unwrap();
        });
        address
    }

    #[tokio::test]
    async fn answers_are_read_plain_and_chunked() {
        let plain = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let response = get(plain, "/status", Limits::default()).await.unwrap();
        assert_eq!((response.status, response.body), (200, b"{}".to_vec()));

        let chunked = answering(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let response = get(chunked, "/x", Limits::default()).await.unwrap();
        assert_eq!((response.status, response.body), (404, b"abcde".to_vec()));
    }

    #[test]
    fn a_synchronous_caller_gets_the_same_answers() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let address =
            runtime.block_on(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        let response = get_blocking(address, "/health", Limits::default()).unwrap();
        assert_eq!((response.status, response.body), (200, b"ok".to_vec()));
        // and from inside a runtime, where a nested block_on would panic
        let address = runtime.block_on(answering(
            b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n",
        ));
        let status = runtime.block_on(async {
            get_blocking(address, "/health", Limits::default())
                .unwrap()
                .status
        });
        assert_eq!(status, 503);
    }

    #[tokio::test]
    async fn garbage_a_long_body_and_silence_are_errors() {
        let garbage = answering(b"garbage\r\n\r\n").await;
        let error = get(garbage, "/", Limits::default()).await.unwrap_err();
        assert!(matches!(error, HttpError::Exchange(_)), "{error}");

        let long =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\naaaaaaaaaaaaaaaaaaaa").await;
        let limits = Limits {
            max_body: 10,
            ..Limits::default()
        };
        let error = get(long, "/", limits).await.unwrap_err();
        assert!(matches!(error, HttpError::TooLong { limit: 10 }), "{error}");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap();
        let limits = Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let error = get(silent, "/", limits).await.unwrap_err();
        assert!(matches!(error, HttpError::Timeout(_)), "{error}");
        drop(listener);
    }
}
