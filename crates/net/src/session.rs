//! Client↔gateway sessions: WebSocket, with a Noise XK session inside (the same pattern as
//! node links). The client proves its identity key (its Noise static key); the gateway proves
//! its own, which the client takes from the topology. Every WebSocket binary message is one
//! Noise message; each transport message's plaintext is one message of
//! [`umbra_wire::gateway`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use umbra_topology::NoiseKey;
use umbra_wire::link::{MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN};

use crate::err::LinkError;
use crate::noise::{self, NoiseKeypair};

type Socket<S> = WebSocketStream<S>;

/// WebSocket limits: one Noise message per WebSocket message, so nothing larger is taken.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN))
}

/// Opens a session with the gateway at `address` whose static key is `gateway`.
pub async fn connect(
    address: SocketAddr,
    keys: &NoiseKeypair,
    gateway: &NoiseKey,
    timeout: Duration,
) -> Result<(SessionSender<TcpStream>, SessionReceiver<TcpStream>), LinkError> {
    let handshake = noise::builder(keys)?
        .remote_public_key(&gateway.0)
        .and_then(|b| b.build_initiator())
        .map_err(LinkError::noise)?;
    let socket = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{address}/");
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(websocket_config()))
                .await
                .map_err(|error| LinkError::Handshake(format!("websocket: {error}")))?;
        Ok::<_, LinkError>(socket)
    })
    .await
    .map_err(|_| LinkError::Timeout)??;
    let (socket, transport) = shake(socket, handshake, timeout).await?;
    Ok(split(socket, transport))
}

/// Accepts a session on `stream`; returns the client's identity key with it.
pub async fn accept<S>(
    stream: S,
    keys: &NoiseKeypair,
    timeout: Duration,
) -> Result<(NoiseKey, SessionSender<S>, SessionReceiver<S>), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = noise::builder(keys)?
        .build_responder()
        .map_err(LinkError::noise)?;
    let socket = tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config())),
    )
    .await
    .map_err(|_| LinkError::Timeout)?
    .map_err(|error| LinkError::Handshake(format!("websocket: {error}")))?;
    let (socket, transport) = shake(socket, handshake, timeout).await?;
    let client = transport
        .get_remote_static()
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .map(NoiseKey)
        .ok_or_else(|| LinkError::Handshake("the client sent no static key".into()))?;
    let (sender, receiver) = split(socket, transport);
    Ok((client, sender, receiver))
}

async fn shake<S>(
    mut socket: Socket<S>,
    mut handshake: HandshakeState,
    timeout: Duration,
) -> Result<(Socket<S>, StatelessTransportState), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(timeout, async {
        let mut buffer = [0u8; 256];
        while !handshake.is_handshake_finished() {
            if handshake.is_my_turn() {
                let len = handshake
                    .write_message(&[], &mut buffer)
                    .map_err(LinkError::noise)?;
                socket
                    .send(Message::Binary(buffer[..len].to_vec().into()))
                    .await
                    .map_err(websocket)?;
            } else {
                let message = next_binary(&mut socket)
                    .await?
                    .ok_or(LinkError::Truncated)?;
                if message.len() > buffer.len() {
                    return Err(LinkError::Handshake(format!(
                        "a {}-byte handshake message",
                        message.len()
                    )));
                }
                handshake
                    .read_message(&message, &mut buffer)
                    .map_err(LinkError::noise)?;
            }
        }
        Ok::<(), LinkError>(())
    })
    .await
    .map_err(|_| LinkError::Timeout)??;
    let transport = handshake
        .into_stateless_transport_mode()
        .map_err(LinkError::noise)?;
    Ok((socket, transport))
}

/// The next binary message, skipping pings and pongs; `None` when the peer closed.
async fn next_binary(
    stream: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Result<Option<Vec<u8>>, LinkError> {
    loop {
        match stream.next().await {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Binary(bytes))) => return Ok(Some(bytes.to_vec())),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Err(LinkError::Handshake(
                    "a text message in a binary session".into(),
                ));
            }
            Some(Err(error)) => return Err(websocket(error)),
        }
    }
}

fn websocket(error: tokio_tungstenite::tungstenite::Error) -> LinkError {
    LinkError::Io(std::io::Error::other(error.to_string()))
}

fn split<S>(
    socket: Socket<S>,
    transport: StatelessTransportState,
) -> (SessionSender<S>, SessionReceiver<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let transport = Arc::new(transport);
    let (sink, stream) = socket.split();
    (
        SessionSender {
            sink,
            transport: Arc::clone(&transport),
            nonce: 0,
            buffer: vec![0; MAX_MESSAGE_LEN],
        },
        SessionReceiver {
            stream,
            transport,
            nonce: 0,
            buffer: vec![0; MAX_MESSAGE_LEN],
        },
    )
}

/// The sending half of a session.
pub struct SessionSender<S> {
    sink: futures_util::stream::SplitSink<Socket<S>, Message>,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    buffer: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SessionSender<S> {
    /// Sends one message (at most 65,519 bytes).
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<(), LinkError> {
        self.feed(plaintext).await?;
        self.flush().await
    }

    /// Queues one message (at most 65,519 bytes) without flushing: several messages then go
    /// out in one write at [`SessionSender::flush`].
    pub async fn feed(&mut self, plaintext: &[u8]) -> Result<(), LinkError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(LinkError::Record(umbra_wire::LinkError::MessageTooLong {
                len: plaintext.len(),
            }));
        }
        let len = self
            .transport
            .write_message(self.nonce, plaintext, &mut self.buffer)
            .map_err(LinkError::noise)?;
        self.nonce += 1;
        self.sink
            .feed(Message::Binary(self.buffer[..len].to_vec().into()))
            .await
            .map_err(websocket)
    }

    /// Writes out what was queued.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        self.sink.flush().await.map_err(websocket)
    }

    /// Closes the session, telling the peer why (in the WebSocket close frame, in the clear:
    /// say nothing private).
    pub async fn close(&mut self, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason.into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
    }
}

/// The receiving half of a session.
pub struct SessionReceiver<S> {
    stream: futures_util::stream::SplitStream<Socket<S>>,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    buffer: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SessionReceiver<S> {
    /// The next message; `None` when the peer closed the session.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        let Some(message) = next_binary(&mut self.stream).await? else {
            return Ok(None);
        };
        let len = self
            .transport
            .read_message(self.nonce, &message, &mut self.buffer)
            .map_err(|_| LinkError::Decrypt)?;
        self.nonce += 1;
        Ok(Some(self.buffer[..len].to_vec()))
    }
}
