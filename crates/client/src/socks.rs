//! The server side of a SOCKS handshake, as a byte-driven state machine with no I/O.
//!
//! Speaks SOCKS5 ([RFC 1928]) with no authentication or username/password ([RFC 1929]), and
//! SOCKS4 and SOCKS4a. Only CONNECT is supported. Domain names are handed on as names, to be
//! resolved at the exit: they are never resolved here.
//!
//! Feed [`SocksHandshake::handle_input`] whatever bytes arrive, split anywhere; after every call
//! send what [`SocksHandshake::take_output`] returns. When it says [`Progress::Finished`], open
//! the stream and answer the client with [`SocksRequest::reply`]. After an error, send the
//! output (the refusal the client is owed, if any) and close the connection.
//!
//! ```text
//! let mut handshake = SocksHandshake::new(SocksConfig::default(), AnyCredentials);
//! let request = loop {
//!     let n = socket.read(&mut buf).await?;
//!     let progress = handshake.handle_input(&buf[..n]);
//!     socket.write_all(&handshake.take_output()).await?;
//!     match progress? { Progress::NeedMore => continue, Progress::Finished(r) => break r }
//! };
//! // ... open the stream, then:
//! socket.write_all(&request.reply(Ok(()))).await?;
//! ```
//!
//! A client that sends data after its request without waiting for the reply is refused:
//! nothing may follow the request until the server has answered it.
//!
//! [RFC 1928]: https://www.rfc-editor.org/rfc/rfc1928
//! [RFC 1929]: https://www.rfc-editor.org/rfc/rfc1929

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The most bytes a handshake holds while waiting for the rest of a message. The longest
/// message is a username/password request (513 bytes); nothing legitimate comes near this.
pub const MAX_BUFFERED: usize = 1024;

/// The longest SOCKS4 user id accepted (SOCKS4 gives it no length limit; we do).
pub const MAX_SOCKS4_USERID: usize = 255;

/// The longest domain name accepted: SOCKS5 gives it one length byte, and SOCKS4a follows.
pub const MAX_DOMAIN_LEN: usize = 255;

const SOCKS4: u8 = 0x04;
const SOCKS5: u8 = 0x05;
const AUTH_VERSION: u8 = 0x01;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USERNAME_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xFF;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;
const SOCKS4_GRANTED: u8 = 0x5A;
const SOCKS4_REJECTED: u8 = 0x5B;

/// Which kinds of SOCKS client the proxy accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocksConfig {
    /// Accept SOCKS5 clients that offer no authentication (method 0x00). Default: yes (the
    /// proxy listens on 127.0.0.1 only).
    pub allow_no_auth: bool,
    /// Accept SOCKS5 username/password authentication (RFC 1929, method 0x02), checked by the
    /// caller's [`CredentialCheck`]. Preferred when a client offers it, so its username reaches
    /// the proxy (streams with different usernames can be kept apart). Default: yes.
    pub allow_username_password: bool,
    /// Accept SOCKS4 and SOCKS4a. They carry no password, so they are refused whenever
    /// `allow_no_auth` is off. Default: yes.
    pub allow_socks4: bool,
}

impl Default for SocksConfig {
    fn default() -> Self {
        SocksConfig {
            allow_no_auth: true,
            allow_username_password: true,
            allow_socks4: true,
        }
    }
}

/// Decides whether a username and password (RFC 1929) may use the proxy.
pub trait CredentialCheck {
    /// Whether these credentials are accepted.
    fn check(&self, username: &[u8], password: &[u8]) -> bool;
}

/// Accepts every username and password: the username only tells streams apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnyCredentials;

impl CredentialCheck for AnyCredentials {
    fn check(&self, _username: &[u8], _password: &[u8]) -> bool {
        true
    }
}

/// One username and password. Only their SHA-256 digests are kept, and they are compared in
/// constant time, so neither the time taken nor the lengths reveal how close a guess was.
#[derive(Clone)]
pub struct Credentials {
    username: [u8; 32],
    password: [u8; 32],
}

impl Credentials {
    /// The credentials to accept.
    pub fn new(username: &[u8], password: &[u8]) -> Self {
        Credentials {
            username: Sha256::digest(username).into(),
            password: Sha256::digest(password).into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl CredentialCheck for Credentials {
    fn check(&self, username: &[u8], password: &[u8]) -> bool {
        let username: [u8; 32] = Sha256::digest(username).into();
        let password: [u8; 32] = Sha256::digest(password).into();
        // `&` rather than `&&`: both comparisons always run.
        (self.username.ct_eq(&username) & self.password.ct_eq(&password)).into()
    }
}

impl<F: Fn(&[u8], &[u8]) -> bool> CredentialCheck for F {
    fn check(&self, username: &[u8], password: &[u8]) -> bool {
        self(username, password)
    }
}

/// Where the client wants to go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// An address.
    Ip(IpAddr),
    /// A name, to be resolved at the exit.
    Domain(DomainName),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Ip(ip) => ip.fmt(f),
            Destination::Domain(name) => name.fmt(f),
        }
    }
}

/// A host name as a client sent it: 1 to 255 bytes of letters, digits, `-`, `_` and `.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// The name, if it is one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-_.".contains(b);
        if bytes.is_empty() || bytes.len() > MAX_DOMAIN_LEN || !bytes.iter().all(allowed) {
            return None;
        }
        String::from_utf8(bytes.to_vec()).ok().map(DomainName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SOCKS version a client spoke (SOCKS4a counts as 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocksVersion {
    /// SOCKS4 or SOCKS4a.
    Socks4,
    /// SOCKS5.
    Socks5,
}

/// A client's CONNECT request, at the end of a successful handshake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SocksRequest {
    /// The protocol spoken, which decides the reply's format.
    pub version: SocksVersion,
    /// The host to connect to.
    pub destination: Destination,
    /// The port to connect to.
    pub port: u16,
    /// The SOCKS5 username, or the SOCKS4 user id, if the client gave a non-empty one.
    pub username: Option<Vec<u8>>,
}

impl SocksRequest {
    /// The reply that tells the client how its request ended, in its version of the protocol.
    /// The bound address is reported as 0.0.0.0:0: the real connection is made at the exit.
    pub fn reply(&self, outcome: Result<(), SocksFailure>) -> Vec<u8> {
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        match (self.version, outcome) {
            (SocksVersion::Socks5, Ok(())) => socks5_success(SocketAddr::V4(unspecified)),
            (SocksVersion::Socks5, Err(failure)) => socks5_failure(failure),
            (SocksVersion::Socks4, Ok(())) => socks4_success(unspecified).to_vec(),
            (SocksVersion::Socks4, Err(_)) => socks4_failure().to_vec(),
        }
    }
}

/// Why a request failed, as the client is told it (RFC 1928 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SocksFailure {
    /// Something else went wrong (0x01).
    #[error("general failure")]
    GeneralFailure,
    /// The exit policy does not allow this destination (0x02).
    #[error("connection not allowed by the exit policy")]
    NotAllowed,
    /// The destination's network cannot be reached (0x03).
    #[error("network unreachable")]
    NetworkUnreachable,
    /// The destination host cannot be reached, or its name does not resolve (0x04).
    #[error("host unreachable")]
    HostUnreachable,
    /// The destination refused the connection (0x05).
    #[error("connection refused")]
    Refused,
    /// The connection timed out (0x06).
    #[error("TTL expired")]
    TtlExpired,
    /// The command is not CONNECT (0x07).
    #[error("command not supported")]
    CommandNotSupported,
    /// The address type is not IPv4, IPv6 or a domain name (0x08).
    #[error("address type not supported")]
    AddressTypeNotSupported,
}

impl SocksFailure {
    /// The SOCKS5 reply code (REP).
    pub fn socks5_code(self) -> u8 {
        match self {
            SocksFailure::GeneralFailure => 0x01,
            SocksFailure::NotAllowed => 0x02,
            SocksFailure::NetworkUnreachable => 0x03,
            SocksFailure::HostUnreachable => 0x04,
            SocksFailure::Refused => 0x05,
            SocksFailure::TtlExpired => 0x06,
            SocksFailure::CommandNotSupported => 0x07,
            SocksFailure::AddressTypeNotSupported => 0x08,
        }
    }

    /// The SOCKS4 reply code (CD): SOCKS4 has a single code for every failure.
    pub fn socks4_code(self) -> u8 {
        SOCKS4_REJECTED
    }
}

/// A SOCKS5 success reply (0x00) naming the address the connection is bound to.
pub fn socks5_success(bound: SocketAddr) -> Vec<u8> {
    socks5_reply(0x00, bound)
}

/// A SOCKS5 failure reply, bound address 0.0.0.0:0.
pub fn socks5_failure(failure: SocksFailure) -> Vec<u8> {
    let unspecified = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    socks5_reply(failure.socks5_code(), unspecified)
}

fn socks5_reply(code: u8, bound: SocketAddr) -> Vec<u8> {
    let mut reply = vec![SOCKS5, code, 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            reply.push(ATYP_IPV4);
            reply.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            reply.push(ATYP_IPV6);
            reply.extend_from_slice(&ip.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    reply
}

/// A SOCKS4 "request granted" reply (0x5A).
pub fn socks4_success(bound: SocketAddrV4) -> [u8; 8] {
    let [p0, p1] = bound.port().to_be_bytes();
    let [a, b, c, d] = bound.ip().octets();
    [0x00, SOCKS4_GRANTED, p0, p1, a, b, c, d]
}

/// A SOCKS4 "request rejected or failed" reply (0x5B).
pub fn socks4_failure() -> [u8; 8] {
    [0x00, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0]
}

/// Why a handshake ended without a request. The client has been sent any refusal it is owed
/// (see [`SocksHandshake::take_output`]); close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first byte is not a SOCKS version this proxy speaks. No reply is sent.
    #[error("not a SOCKS4 or SOCKS5 client (first byte {0:#04x})")]
    UnknownVersion(u8),
    /// A SOCKS4 client, and SOCKS4 is turned off (or authentication is required, which SOCKS4
    /// cannot do).
    #[error("SOCKS4 is not accepted here (socks.allow_socks4, or authentication is required)")]
    Socks4NotAllowed,
    /// A SOCKS5 greeting that offers no method at all.
    #[error("the SOCKS5 greeting offers no authentication method")]
    NoMethods,
    /// A SOCKS5 greeting that offers no method this proxy accepts.
    #[error("the client offers no authentication method this proxy accepts")]
    NoAcceptableMethod,
    /// A username/password request of a version other than 1.
    #[error("username/password authentication of unknown version {0:#04x}")]
    AuthVersion(u8),
    /// The username and password were refused.
    #[error("wrong username or password")]
    BadCredentials,
    /// A SOCKS5 request whose version byte is not 5.
    #[error("SOCKS5 request with version byte {0:#04x}")]
    RequestVersion(u8),
    /// A SOCKS5 request whose reserved byte is not zero.
    #[error("SOCKS5 request with reserved byte {0:#04x} (must be 0)")]
    Reserved(u8),
    /// A command other than CONNECT (BIND is 0x02, UDP ASSOCIATE 0x03).
    #[error("command {0:#04x} is not supported: only CONNECT (0x01) is")]
    CommandNotSupported(u8),
    /// A SOCKS5 address type other than IPv4, domain name and IPv6.
    #[error("address type {0:#04x} is not supported")]
    AddressTypeNotSupported(u8),
    /// A domain name of length 0.
    #[error("empty domain name")]
    EmptyDomain,
    /// A domain name with characters no host name has.
    #[error("the domain name is not a host name")]
    BadDomain,
    /// A SOCKS4 user id longer than [`MAX_SOCKS4_USERID`].
    #[error("SOCKS4 user id longer than {MAX_SOCKS4_USERID} bytes")]
    UseridTooLong,
    /// A SOCKS4a domain name longer than [`MAX_DOMAIN_LEN`].
    #[error("SOCKS4a domain name longer than {MAX_DOMAIN_LEN} bytes")]
    DomainTooLong,
    /// Bytes after the request, before the proxy has answered it.
    #[error("{0} bytes sent after the request, before the reply")]
    TrailingBytes(usize),
    /// A message longer than [`MAX_BUFFERED`].
    #[error("a handshake message longer than {MAX_BUFFERED} bytes")]
    Oversized,
    /// Input after the handshake had already finished or failed.
    #[error("the handshake has already ended")]
    Ended,
}

/// How far a handshake has got.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// More bytes are needed.
    NeedMore,
    /// The client's request: connect, then answer with [`SocksRequest::reply`].
    Finished(SocksRequest),
}

/// What the handshake waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The first byte, which says the version.
    Version,
    /// The SOCKS5 method-selection message.
    Greeting,
    /// The RFC 1929 username/password request.
    Auth,
    /// The SOCKS5 request.
    Request,
    /// The SOCKS4 or SOCKS4a request.
    Socks4Request,
    /// Finished or failed.
    Ended,
}

/// The server side of one SOCKS handshake. See the [module documentation](self).
pub struct SocksHandshake<C = AnyCredentials> {
    config: SocksConfig,
    credentials: C,
    state: State,
    /// Bytes of the message being received; never more than [`MAX_BUFFERED`].
    buffer: Vec<u8>,
    /// Bytes to send to the client.
    output: Vec<u8>,
    username: Option<Vec<u8>>,
}

impl<C> fmt::Debug for SocksHandshake<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buffer may hold a password: leave it out.
        f.debug_struct("SocksHandshake")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// One message read from the front of the buffer.
enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// The message and how many bytes it took.
    Complete(T, usize),
}

impl<C: CredentialCheck> SocksHandshake<C> {
    /// A handshake with a new client.
    pub fn new(config: SocksConfig, credentials: C) -> Self {
        SocksHandshake {
            config,
            credentials,
            state: State::Version,
            buffer: Vec::new(),
            output: Vec::new(),
            username: None,
        }
    }

    /// Takes bytes from the client, in pieces of any size. Replies are added to the output
    /// (send [`take_output`](Self::take_output) after every call, whatever it returns).
    pub fn handle_input(&mut self, mut input: &[u8]) -> Result<Progress, HandshakeError> {
        if self.state == State::Ended {
            return Err(HandshakeError::Ended);
        }
        // Take no more than the buffer's room at a time, so a flood is never held at once.
        // Each step handles every message complete in the buffer.
        loop {
            let room = MAX_BUFFERED - self.buffer.len();
            let (now, rest) = input.split_at(room.min(input.len()));
            self.buffer.extend_from_slice(now);
            input = rest;
            match self.step() {
                // Unreachable while every message fits the buffer; a guard against looping.
                Ok(None) if self.buffer.len() == MAX_BUFFERED => {
                    self.end();
                    return Err(HandshakeError::Oversized);
                }
                Ok(None) => {}
                Ok(Some(request)) => {
                    let trailing = self.buffer.len() + input.len();
                    self.end();
                    if trailing > 0 {
                        let reply = request.reply(Err(SocksFailure::GeneralFailure));
                        self.output.extend_from_slice(&reply);
                        return Err(HandshakeError::TrailingBytes(trailing));
                    }
                    return Ok(Progress::Finished(request));
                }
                Err(error) => {
                    self.end();
                    return Err(error);
                }
            }
            if input.is_empty() {
                return Ok(Progress::NeedMore);
            }
        }
    }

    /// What to send to the client now (empty if nothing).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// How many received bytes are held waiting for the rest of their message (at most
    /// [`MAX_BUFFERED`]).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn end(&mut self) {
        self.state = State::Ended;
        self.buffer.zeroize();
        self.buffer = Vec::new();
    }

    /// Handles the next message if it has all arrived: `Ok(Some(_))` when it was the request.
    fn step(&mut self) -> Result<Option<SocksRequest>, HandshakeError> {
        match self.state {
            State::Version => {
                let Some(&version) = self.buffer.first() else {
                    return Ok(None);
                };
                match version {
                    SOCKS5 => self.state = State::Greeting,
                    SOCKS4 if self.config.allow_socks4 && self.config.allow_no_auth => {
                        self.state = State::Socks4Request;
                    }
                    SOCKS4 => {
                        self.output.extend_from_slice(&socks4_failure());
                        return Err(HandshakeError::Socks4NotAllowed);
                    }
                    other => return Err(HandshakeError::UnknownVersion(other)),
                }
                self.step()
            }
            State::Greeting => {
                let Parsed::Complete(offered, len) =
                    parse_greeting(&self.buffer).inspect_err(|_| {
                        self.output
                            .extend_from_slice(&[SOCKS5, NO_ACCEPTABLE_METHOD])
                    })?
                else {
                    return Ok(None);
                };
                let username_password = offered.contains(&METHOD_USERNAME_PASSWORD);
                let no_auth = offered.contains(&METHOD_NO_AUTH);
                self.buffer.drain(..len);
                if self.config.allow_username_password && username_password {
                    self.output
                        .extend_from_slice(&[SOCKS5, METHOD_USERNAME_PASSWORD]);
                    self.state = State::Auth;
                } else if self.config.allow_no_auth && no_auth {
                    self.output.extend_from_slice(&[SOCKS5, METHOD_NO_AUTH]);
                    self.state = State::Request;
                } else {
                    self.output
                        .extend_from_slice(&[SOCKS5, NO_ACCEPTABLE_METHOD]);
                    return Err(HandshakeError::NoAcceptableMethod);
                }
                self.step()
            }
            State::Auth => {
                let refuse = [AUTH_VERSION, 0x01];
                let parsed = parse_auth(&self.buffer)
                    .inspect_err(|_| self.output.extend_from_slice(&refuse))?;
                let Parsed::Complete(Auth { username, password }, len) = parsed else {
                    return Ok(None);
                };
                let accepted = self.credentials.check(username, password);
                let username = username.to_vec();
                // The password is not kept, not even in the buffer's spare room.
                self.buffer[..len].zeroize();
                self.buffer.drain(..len);
                if !accepted {
                    self.output.extend_from_slice(&refuse);
                    return Err(HandshakeError::BadCredentials);
                }
                self.output.extend_from_slice(&[AUTH_VERSION, 0x00]);
                self.username = (!username.is_empty()).then_some(username);
                self.state = State::Request;
                self.step()
            }
            State::Request => match parse_request(&self.buffer) {
                Ok(Parsed::Incomplete) => Ok(None),
                Ok(Parsed::Complete((destination, port), len)) => {
                    self.buffer.drain(..len);
                    Ok(Some(SocksRequest {
                        version: SocksVersion::Socks5,
                        destination,
                        port,
                        username: self.username.take(),
                    }))
                }
                Err(error) => {
                    self.output
                        .extend_from_slice(&socks5_failure(request_failure(&error)));
                    Err(error)
                }
            },
            State::Socks4Request => match parse_socks4(&self.buffer) {
                Ok(Parsed::Incomplete) => Ok(None),
                Ok(Parsed::Complete(request, len)) => {
                    self.buffer.drain(..len);
                    Ok(Some(request))
                }
                Err(error) => {
                    self.output.extend_from_slice(&socks4_failure());
                    Err(error)
                }
            },
            State::Ended => Err(HandshakeError::Ended),
        }
    }
}

/// The SOCKS5 reply code for a malformed request.
fn request_failure(error: &HandshakeError) -> SocksFailure {
    match error {
        HandshakeError::CommandNotSupported(_) => SocksFailure::CommandNotSupported,
        HandshakeError::AddressTypeNotSupported(_) => SocksFailure::AddressTypeNotSupported,
        _ => SocksFailure::GeneralFailure,
    }
}

// Each parser checks the message front to back and decides as soon as the bytes that decide
// are there, so the outcome is the same however the input was split.

/// VER(5) NMETHODS METHODS...: the methods offered.
fn parse_greeting(buf: &[u8]) -> Result<Parsed<&[u8]>, HandshakeError> {
    let Some(&count) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    if count == 0 {
        return Err(HandshakeError::NoMethods);
    }
    let len = 2 + usize::from(count);
    Ok(match buf.get(2..len) {
        Some(methods) => Parsed::Complete(methods, len),
        None => Parsed::Incomplete,
    })
}

/// The credentials of a username/password request.
struct Auth<'a> {
    username: &'a [u8],
    password: &'a [u8],
}

/// VER(1) ULEN UNAME PLEN PASSWD: the username and password.
fn parse_auth(buf: &[u8]) -> Result<Parsed<Auth<'_>>, HandshakeError> {
    let Some(&version) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if version != AUTH_VERSION {
        return Err(HandshakeError::AuthVersion(version));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(Parsed::Incomplete);
    };
    let plen_at = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(plen_at) else {
        return Ok(Parsed::Incomplete);
    };
    let len = plen_at + 1 + usize::from(plen);
    let (Some(username), Some(password)) = (buf.get(2..plen_at), buf.get(plen_at + 1..len)) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete(Auth { username, password }, len))
}

/// VER(5) CMD RSV ATYP DST.ADDR DST.PORT: the destination and port.
fn parse_request(buf: &[u8]) -> Result<Parsed<(Destination, u16)>, HandshakeError> {
    let incomplete = Ok(Parsed::Incomplete);
    let Some(&version) = buf.first() else {
        return incomplete;
    };
    if version != SOCKS5 {
        return Err(HandshakeError::RequestVersion(version));
    }
    let Some(&command) = buf.get(1) else {
        return incomplete;
    };
    if command != CMD_CONNECT {
        return Err(HandshakeError::CommandNotSupported(command));
    }
    let Some(&reserved) = buf.get(2) else {
        return incomplete;
    };
    if reserved != 0 {
        return Err(HandshakeError::Reserved(reserved));
    }
    let Some(&address_type) = buf.get(3) else {
        return incomplete;
    };
    let (destination, port_at) = match address_type {
        ATYP_IPV4 => {
            let Some(octets) = buf.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                return incomplete;
            };
            (Destination::Ip(Ipv4Addr::from(octets).into()), 8)
        }
        ATYP_IPV6 => {
            let Some(octets) = buf.get(4..20).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
                return incomplete;
            };
            (Destination::Ip(Ipv6Addr::from(octets).into()), 20)
        }
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(4) else {
                return incomplete;
            };
            if len == 0 {
                return Err(HandshakeError::EmptyDomain);
            }
            let end = 5 + usize::from(len);
            let Some(name) = buf.get(5..end) else {
                return incomplete;
            };
            (destination(name)?, end)
        }
        other => return Err(HandshakeError::AddressTypeNotSupported(other)),
    };
    let Some(port) = buf.get(port_at..port_at + 2) else {
        return incomplete;
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok(Parsed::Complete((destination, port), port_at + 2))
}

/// VN(4) CD DSTPORT DSTIP USERID NUL [DOMAIN NUL]: the request (SOCKS4a when DSTIP is
/// 0.0.0.x with x nonzero).
fn parse_socks4(buf: &[u8]) -> Result<Parsed<SocksRequest>, HandshakeError> {
    let incomplete = Ok(Parsed::Incomplete);
    let Some(&command) = buf.get(1) else {
        return incomplete;
    };
    if command != CMD_CONNECT {
        return Err(HandshakeError::CommandNotSupported(command));
    }
    let Some(head) = buf.get(..8) else {
        return incomplete;
    };
    let port = u16::from_be_bytes([head[2], head[3]]);
    let ip = Ipv4Addr::new(head[4], head[5], head[6], head[7]);
    let Some((userid, after_userid)) =
        nul_terminated(&buf[8..], MAX_SOCKS4_USERID, HandshakeError::UseridTooLong)?
    else {
        return incomplete;
    };
    let mut len = 8 + after_userid;
    let is_4a = matches!(ip.octets(), [0, 0, 0, x] if x != 0);
    let destination = if is_4a {
        let Some((name, after_name)) =
            nul_terminated(&buf[len..], MAX_DOMAIN_LEN, HandshakeError::DomainTooLong)?
        else {
            return incomplete;
        };
        if name.is_empty() {
            return Err(HandshakeError::EmptyDomain);
        }
        len += after_name;
        destination(name)?
    } else {
        Destination::Ip(ip.into())
    };
    let request = SocksRequest {
        version: SocksVersion::Socks4,
        destination,
        port,
        username: (!userid.is_empty()).then(|| userid.to_vec()),
    };
    Ok(Parsed::Complete(request, len))
}

/// The bytes before the first NUL of `buf` and how many bytes the field took with its NUL;
/// `None` until the NUL arrives; `too_long` once `max` bytes have come without one.
fn nul_terminated(
    buf: &[u8],
    max: usize,
    too_long: HandshakeError,
) -> Result<Option<(&[u8], usize)>, HandshakeError> {
    match buf.iter().take(max + 1).position(|&b| b == 0) {
        Some(at) => Ok(Some((&buf[..at], at + 1))),
        None if buf.len() > max => Err(too_long),
        None => Ok(None),
    }
}

/// A name sent for resolution at the exit; an address literal sent as a name is an address.
fn destination(name: &[u8]) -> Result<Destination, HandshakeError> {
    if let Some(ip) = std::str::from_utf8(name)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
    {
        return Ok(Destination::Ip(ip));
    }
    DomainName::parse(name)
        .map(Destination::Domain)
        .ok_or(HandshakeError::BadDomain)
}
