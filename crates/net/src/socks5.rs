//! Reaching a server through a SOCKS5 proxy (RFC 1928): how `umbra tx --proxy`, `umbra
//! account --proxy` and node registration send a validator their requests through the mixnet
//! (`umbra socks5`'s proxy, then an exit), so the validator never learns who submitted them.
//!
//! `socks5h://host:port` hands the server's name to the proxy, which resolves it (at the
//! exit, for Umbra's proxy): nothing about the destination is looked up or sent from this
//! machine. `socks5://host:port` resolves the name here first and sends the proxy an address,
//! as curl does; it leaks the lookup to the local resolver and is there for proxies that take
//! no names. Only the "no authentication" method is offered.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A SOCKS5 proxy's address, as `socks5h://host:port` or `socks5://host:port` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Socks5Proxy {
    host: String,
    port: u16,
    /// `socks5h`: the proxy resolves destination names.
    remote_names: bool,
}

/// Why a proxy's address could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyUrlError {
    /// Not `socks5h://` or `socks5://`.
    #[error(
        "{text:?} is not a SOCKS5 proxy: write socks5h://host:port (e.g. socks5h://127.0.0.1:1080, where `umbra socks5 run` listens by default)"
    )]
    Scheme {
        /// What was given.
        text: String,
    },
    /// No `host:port` after the scheme.
    #[error("{text:?}: write the proxy as socks5h://host:port, with a port number")]
    NotHostPort {
        /// What was given.
        text: String,
    },
}

impl Socks5Proxy {
    /// Whether destination names are resolved by the proxy (`socks5h://`).
    pub fn resolves_names(&self) -> bool {
        self.remote_names
    }

    /// Connects to `host:port` through the proxy; `host` is a name or an IP address.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
        let proxy = self.to_string();
        let unreachable = |reason: String| ProxyError::Unreachable {
            proxy: proxy.clone(),
            reason,
        };
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let _ = stream.set_nodelay(true);
        let garbled = |what: &str| ProxyError::NotSocks5 {
            proxy: proxy.clone(),
            what: what.to_owned(),
        };
        // greeting: version 5, one method, "no authentication"
        stream
            .write_all(&[5, 1, 0])
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let mut choice = [0; 2];
        stream
            .read_exact(&mut choice)
            .await
            .map_err(|_| garbled("it closed the connection after the greeting"))?;
        match choice {
            [5, 0] => {}
            [5, 0xff] => return Err(ProxyError::AuthenticationRequired { proxy }),
            [5, _] => return Err(garbled("it chose a method that was not offered")),
            _ => return Err(garbled("its answer to the greeting is not SOCKS5")),
        }
        let destination = self.destination(host, port).await?;
        let mut request = vec![5, 1, 0];
        request.extend_from_slice(&destination);
        request.extend_from_slice(&port.to_be_bytes());
        stream
            .write_all(&request)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let mut reply = [0; 4];
        stream
            .read_exact(&mut reply)
            .await
            .map_err(|_| garbled("it closed the connection before answering the CONNECT"))?;
        if reply[0] != 5 {
            return Err(garbled("its answer to the CONNECT is not SOCKS5"));
        }
        if reply[1] != 0 {
            return Err(ProxyError::Refused {
                proxy,
                destination: format!("{host}:{port}"),
                code: reply[1],
            });
        }
        // the bound address, which nothing here needs
        let skip = match reply[3] {
            1 => 4,
            4 => 16,
            3 => {
                let mut length = [0; 1];
                stream
                    .read_exact(&mut length)
                    .await
                    .map_err(|_| garbled("its CONNECT answer is cut short"))?;
                usize::from(length[0])
            }
            _ => return Err(garbled("its CONNECT answer has an unknown address type")),
        };
        let mut bound = vec![0; skip + 2];
        stream
            .read_exact(&mut bound)
            .await
            .map_err(|_| garbled("its CONNECT answer is cut short"))?;
        Ok(stream)
    }

    /// The CONNECT request's address: the name itself with `socks5h`, an address otherwise.
    async fn destination(&self, host: &str, port: u16) -> Result<Vec<u8>, ProxyError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if self.remote_names => {
                if host.is_empty() || host.len() > 255 {
                    return Err(ProxyError::BadName {
                        host: host.to_owned(),
                    });
                }
                let mut name = vec![3, host.len() as u8];
                name.extend_from_slice(host.as_bytes());
                return Ok(name);
            }
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut found| found.next())
                .map(|address| address.ip())
                .ok_or_else(|| ProxyError::BadName {
                    host: host.to_owned(),
                })?,
        };
        Ok(match ip {
            IpAddr::V4(ip) => [&[1][..], &ip.octets()].concat(),
            IpAddr::V6(ip) => [&[4][..], &ip.octets()].concat(),
        })
    }
}

impl FromStr for Socks5Proxy {
    type Err = ProxyUrlError;

    fn from_str(text: &str) -> Result<Socks5Proxy, ProxyUrlError> {
        let text = text.trim();
        let (rest, remote_names) = if let Some(rest) = text.strip_prefix("socks5h://") {
            (rest, true)
        } else if let Some(rest) = text.strip_prefix("socks5://") {
            (rest, false)
        } else {
            return Err(ProxyUrlError::Scheme {
                text: text.to_owned(),
            });
        };
        let rest = rest.trim_end_matches('/');
        let not_host_port = || ProxyUrlError::NotHostPort {
            text: text.to_owned(),
        };
        let (host, port) = match rest.parse::<SocketAddr>() {
            Ok(address) => (address.ip().to_string(), address.port()),
            Err(_) => {
                let (host, port) = rest.rsplit_once(':').ok_or_else(not_host_port)?;
                let port = port.parse::<u16>().map_err(|_| not_host_port())?;
                if host.is_empty() || host.contains(['/', '@']) {
                    return Err(not_host_port());
                }
                (host.to_owned(), port)
            }
        };
        Ok(Socks5Proxy {
            host,
            port,
            remote_names,
        })
    }
}

impl fmt::Display for Socks5Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.remote_names {
            "socks5h"
        } else {
            "socks5"
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Why a connection through the proxy failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No connection to the proxy itself.
    #[error(
        "cannot reach the SOCKS5 proxy at {proxy}: {reason}. Is the proxy running (`umbra socks5 run`, or `umbra localnet`, which prints its address), and is this its address?"
    )]
    Unreachable {
        /// The proxy.
        proxy: String,
        /// Why.
        reason: String,
    },
    /// Something answered that is not a SOCKS5 proxy.
    #[error("{proxy} does not answer as a SOCKS5 proxy: {what}. Is this the proxy's port?")]
    NotSocks5 {
        /// The proxy.
        proxy: String,
        /// What was wrong.
        what: String,
    },
    /// The proxy wants a username and password.
    #[error(
        "the SOCKS5 proxy at {proxy} requires a username and password, which this command does not send; use a proxy without them (Umbra's, unless `username` is set in its config.toml)"
    )]
    AuthenticationRequired {
        /// The proxy.
        proxy: String,
    },
    /// The proxy could not connect (through the mixnet, the exit could not, or would not).
    #[error("the SOCKS5 proxy at {proxy} could not connect to {destination}: {}", refusal(*code))]
    Refused {
        /// The proxy.
        proxy: String,
        /// Where to.
        destination: String,
        /// The SOCKS5 reply code.
        code: u8,
    },
    /// A host name that cannot go in a request (or, with `socks5://`, does not resolve here).
    #[error("{host:?} is not a host name the proxy can be asked for")]
    BadName {
        /// The name.
        host: String,
    },
}

fn refusal(code: u8) -> String {
    let what = match code {
        1 => "general failure (the mixnet or the exit did not answer in time?)",
        2 => "not allowed by the exit's policy",
        3 => "network unreachable",
        4 => "host unreachable, or its name does not resolve at the exit",
        5 => "connection refused by the destination",
        6 => "timed out",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "an unknown failure",
    };
    format!("{what} (SOCKS5 reply {code})")
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn proxies_parse_or_say_how_to_write_them() {
        let proxy: Socks5Proxy = "socks5h://127.0.0.1:1080".parse().unwrap();
        assert!(proxy.resolves_names());
        assert_eq!(proxy.to_string(), "socks5h://127.0.0.1:1080");
        let local: Socks5Proxy = "socks5://proxy.example:9050/".parse().unwrap();
        assert!(!local.resolves_names());
        assert_eq!(local.to_string(), "socks5://proxy.example:9050");
        let v6: Socks5Proxy = "socks5h://[::1]:1080".parse().unwrap();
        assert_eq!(v6.to_string(), "socks5h://[::1]:1080");
        for wrong in ["http://127.0.0.1:1080", "127.0.0.1:1080", "socks4://a:1"] {
            let error = wrong.parse::<Socks5Proxy>().unwrap_err();
            assert!(matches!(error, ProxyUrlError::Scheme { .. }), "{wrong}");
            assert!(error.to_string().contains("socks5h://host:port"));
        }
        for wrong in ["socks5h://127.0.0.1", "socks5h://:80", "socks5h://a:port"] {
            let error = wrong.parse::<Socks5Proxy>().unwrap_err();
            assert!(
                matches!(error, ProxyUrlError::NotHostPort { .. }),
                "{wrong}"
            );
        }
    }

    /// A proxy that checks the greeting, records the CONNECT request and answers `reply`.
    async fn proxy_answering(reply: u8) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut greeting = [0; 3];
            stream.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            stream.write_all(&[5, 0]).await.unwrap();
            let mut request = vec![0; 5];
            stream.read_exact(&mut request).await.unwrap();
            let rest = match request[3] {
                1 => 3 + 2,
                4 => 15 + 2,
                _ => usize::from(request[4]) + 2,
            };
            let mut tail = vec![0; rest];
            stream.read_exact(&mut tail).await.unwrap();
            request.extend_from_slice(&tail);
            stream
                .write_all(&[5, reply, 0, 1, 127, 0, 0, 1, 0, 80])
                .await
                .unwrap();
            if reply == 0 {
                stream.write_all(b"through").await.unwrap();
            }
            request
        });
        (address, task)
    }

    #[tokio::test]
    async fn names_go_to_the_proxy_and_refusals_say_why() {
        let (address, task) = proxy_answering(0).await;
        let proxy: Socks5Proxy = format!("socks5h://{address}").parse().unwrap();
        let mut stream = proxy.connect("validator.example", 7000).await.unwrap();
        let mut first = [0; 7];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"through");
        let request = task.await.unwrap();
        // CONNECT, a domain name of 17 bytes, the name itself, port 7000
        let mut expected = vec![5, 1, 0, 3, 17];
        expected.extend_from_slice(b"validator.example");
        expected.extend_from_slice(&7000_u16.to_be_bytes());
        assert_eq!(request, expected);

        let (address, task) = proxy_answering(2).await;
        let proxy: Socks5Proxy = format!("socks5h://{address}").parse().unwrap();
        let error = proxy.connect("10.1.2.3", 80).await.unwrap_err();
        assert!(matches!(error, ProxyError::Refused { code: 2, .. }));
        assert!(
            error
                .to_string()
                .contains("not allowed by the exit's policy")
        );
        // an address goes as an address
        assert_eq!(task.await.unwrap(), vec![5, 1, 0, 1, 10, 1, 2, 3, 0, 80]);
    }

    #[tokio::test]
    async fn no_proxy_and_no_socks_are_told_apart() {
        // nothing listens: the port of a listener just closed
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let proxy: Socks5Proxy = format!("socks5h://{address}").parse().unwrap();
        let error = proxy.connect("example.org", 80).await.unwrap_err();
        assert!(matches!(error, ProxyError::Unreachable { .. }));
        assert!(error.to_string().contains("Is the proxy running"));

        // an HTTP server where the proxy should be
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut greeting = [0; 3];
            let _ = stream.read_exact(&mut greeting).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let proxy: Socks5Proxy = format!("socks5h://{address}").parse().unwrap();
        let error = proxy.connect("example.org", 80).await.unwrap_err();
        assert!(matches!(error, ProxyError::NotSocks5 { .. }), "{error}");
    }
}
