//! Noise links between nodes: TCP, `Noise_XK_25519_AESGCM_SHA256`, one length-prefixed
//! Noise message per record (see [`umbra_wire::link`]).
//!
//! XK: the initiator knows the responder's static key in advance (from the topology) and
//! proves its own in the third handshake message, so each side ends up knowing exactly which
//! node is at the other end. Links carry frames one way, from initiator to responder; the
//! transport is split into a reader and a writer half, each keeping its own nonce.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use curve25519_dalek::MontgomeryPoint;
use rand::Rng;
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use umbra_topology::NoiseKey;
use umbra_wire::frame::{self, Decoded, Frame};
use umbra_wire::link::{self, MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, TAG_LEN};
use zeroize::Zeroizing;

use crate::err::LinkError;

const PATTERN: &str = "Noise_XK_25519_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"umbra node link v1";

/// A node's static Noise key pair.
#[derive(Clone)]
pub struct NoiseKeypair {
    private: Zeroizing<[u8; 32]>,
    public: NoiseKey,
}

impl NoiseKeypair {
    /// The key pair of this private key.
    pub fn from_private(private: [u8; 32]) -> Self {
        let public = NoiseKey(MontgomeryPoint::mul_base_clamped(private).to_bytes());
        NoiseKeypair {
            private: Zeroizing::new(private),
            public,
        }
    }

    /// A fresh random key pair.
    pub fn generate() -> Self {
        let mut private = [0u8; 32];
        rand::rng().fill_bytes(&mut private);
        NoiseKeypair::from_private(private)
    }

    /// The public key peers know this node by.
    pub fn public(&self) -> NoiseKey {
        self.public
    }

    /// The private key's bytes, for storing it.
    pub fn private_bytes(&self) -> &[u8; 32] {
        &self.private
    }
}

impl std::fmt::Debug for NoiseKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoiseKeypair(<redacted>; public {})", self.public)
    }
}

/// The two halves of a link over `S`.
pub type Link<S> = (
    LinkReader<tokio::io::ReadHalf<S>>,
    LinkWriter<tokio::io::WriteHalf<S>>,
);

/// Opens a link to the node whose static key is `responder`, over `stream`.
pub async fn initiate<S>(
    stream: S,
    keys: &NoiseKeypair,
    responder: &NoiseKey,
    timeout: Duration,
) -> Result<Link<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = builder(keys)?
        .remote_public_key(&responder.0)
        .and_then(|b| b.build_initiator())
        .map_err(LinkError::noise)?;
    let (stream, transport) = shake(stream, handshake, timeout).await?;
    Ok(split(stream, transport))
}

/// Accepts a link over `stream`; returns the initiator's static key with the link, for the
/// caller to check against the nodes it accepts links from.
pub async fn respond<S>(
    stream: S,
    keys: &NoiseKeypair,
    timeout: Duration,
) -> Result<(NoiseKey, Link<S>), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = builder(keys)?.build_responder().map_err(LinkError::noise)?;
    let (stream, transport) = shake(stream, handshake, timeout).await?;
    let remote = transport
        .get_remote_static()
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .map(NoiseKey)
        .ok_or_else(|| LinkError::Handshake("the initiator sent no static key".into()))?;
    Ok((remote, split(stream, transport)))
}

/// Runs a handshake to its end (XK: -> e, es; <- e, ee; -> s, se), within `timeout`.
async fn shake<S>(
    mut stream: S,
    mut handshake: HandshakeState,
    timeout: Duration,
) -> Result<(S, StatelessTransportState), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(timeout, async {
        while !handshake.is_handshake_finished() {
            if handshake.is_my_turn() {
                send_handshake(&mut stream, &mut handshake).await?;
            } else {
                receive_handshake(&mut stream, &mut handshake).await?;
            }
        }
        Ok::<(), LinkError>(())
    })
    .await
    .map_err(|_| LinkError::Timeout)??;
    let transport = handshake
        .into_stateless_transport_mode()
        .map_err(LinkError::noise)?;
    Ok((stream, transport))
}

pub(crate) fn builder(keys: &NoiseKeypair) -> Result<snow::Builder<'_>, LinkError> {
    let params = PATTERN.parse().map_err(LinkError::noise)?;
    snow::Builder::new(params)
        .local_private_key(keys.private.as_ref())
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(LinkError::noise)
}

async fn send_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    handshake: &mut HandshakeState,
) -> Result<(), LinkError> {
    let mut message = [0u8; 2 + 128];
    let len = handshake
        .write_message(&[], &mut message[2..])
        .map_err(LinkError::noise)?;
    message[..2].copy_from_slice(&link::prefix(len).map_err(LinkError::Record)?);
    stream.write_all(&message[..2 + len]).await?;
    stream.flush().await?;
    Ok(())
}

async fn receive_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
    handshake: &mut HandshakeState,
) -> Result<(), LinkError> {
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let len = usize::from(u16::from_be_bytes(prefix));
    // handshake messages of XK are 48 to 64 bytes: anything longer is not a peer
    if !(TAG_LEN..=128).contains(&len) {
        return Err(LinkError::Handshake(format!(
            "a {len}-byte handshake message"
        )));
    }
    let mut message = [0u8; 128];
    stream.read_exact(&mut message[..len]).await?;
    let mut payload = [0u8; 128];
    handshake
        .read_message(&message[..len], &mut payload)
        .map_err(LinkError::noise)?;
    Ok(())
}

fn split<S: AsyncRead + AsyncWrite>(
    stream: S,
    transport: StatelessTransportState,
) -> (
    LinkReader<tokio::io::ReadHalf<S>>,
    LinkWriter<tokio::io::WriteHalf<S>>,
) {
    let transport = Arc::new(transport);
    let (read, write) = tokio::io::split(stream);
    (
        LinkReader {
            io: BufReader::with_capacity(2 * MAX_MESSAGE_LEN, read),
            transport: Arc::clone(&transport),
            nonce: 0,
            record: vec![0; MAX_MESSAGE_LEN],
            plaintext: Vec::with_capacity(2 * MAX_PLAINTEXT_LEN),
        },
        LinkWriter {
            io: write,
            transport,
            nonce: 0,
            plaintext: Vec::with_capacity(MAX_PLAINTEXT_LEN),
            record: vec![0; 2 + MAX_MESSAGE_LEN],
        },
    )
}

/// The receiving half of a link: yields the frames the peer sends.
pub struct LinkReader<R> {
    io: BufReader<R>,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    record: Vec<u8>,
    plaintext: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LinkReader<R> {
    /// The next frame, or `None` when the peer closed the link cleanly between records.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, LinkError> {
        loop {
            match frame::decode(&self.plaintext).map_err(LinkError::Frame)? {
                Decoded::Frame { frame, len } => {
                    self.plaintext.drain(..len);
                    return Ok(Some(frame));
                }
                Decoded::Incomplete { .. } => {
                    if !self.read_record().await? {
                        return if self.plaintext.is_empty() {
                            Ok(None)
                        } else {
                            Err(LinkError::Truncated)
                        };
                    }
                }
            }
        }
    }

    /// Reads and decrypts one record into the plaintext buffer; `false` at a clean end.
    async fn read_record(&mut self) -> Result<bool, LinkError> {
        let mut prefix = [0u8; 2];
        match self.io.read_exact(&mut prefix[..1]).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        self.io
            .read_exact(&mut prefix[1..])
            .await
            .map_err(truncated)?;
        let len = link::message_len(prefix).map_err(LinkError::Record)?;
        let message = &mut self.record[..len];
        self.io.read_exact(message).await.map_err(truncated)?;
        let start = self.plaintext.len();
        self.plaintext.resize(start + len, 0);
        let written = self
            .transport
            .read_message(self.nonce, message, &mut self.plaintext[start..])
            .map_err(|_| LinkError::Decrypt)?;
        self.plaintext.truncate(start + written);
        self.nonce += 1;
        Ok(true)
    }
}

fn truncated(error: io::Error) -> LinkError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        LinkError::Truncated
    } else {
        error.into()
    }
}

/// The sending half of a link.
pub struct LinkWriter<W> {
    io: W,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    plaintext: Vec<u8>,
    record: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> LinkWriter<W> {
    /// Whether another frame of `len` bytes still fits the record being packed.
    pub fn fits(&self, len: usize) -> bool {
        self.plaintext.len() + len <= MAX_PLAINTEXT_LEN
    }

    /// Adds a frame to the record being packed (sealed on [`LinkWriter::flush`], or first if
    /// it would not fit).
    pub async fn push(&mut self, frame: &Frame) -> Result<(), LinkError> {
        if !self.fits(frame.header.frame_len()) {
            self.seal().await?;
        }
        frame::encode(frame.header, &frame.packet, &mut self.plaintext);
        Ok(())
    }

    /// Seals and sends what is packed, and flushes the socket.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        self.seal().await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Closes the link cleanly after sending what is packed.
    pub async fn shutdown(&mut self) -> Result<(), LinkError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    async fn seal(&mut self) -> Result<(), LinkError> {
        if self.plaintext.is_empty() {
            return Ok(());
        }
        let len = self
            .transport
            .write_message(self.nonce, &self.plaintext, &mut self.record[2..])
            .map_err(LinkError::noise)?;
        self.nonce += 1;
        self.record[..2].copy_from_slice(&link::prefix(len).map_err(LinkError::Record)?);
        self.plaintext.clear();
        self.io.write_all(&self.record[..2 + len]).await?;
        Ok(())
    }
}
