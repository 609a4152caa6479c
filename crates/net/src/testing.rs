//! Helpers for tests of servers on a paused tokio clock (this crate's, the node daemons', the
//! client API's, the validator's): not part of the API.

// Helpers of tests: a failure is the test's, and panics with what went wrong.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Keeps the paused clock from leaping over socket I/O in flight: the runtime sees a
/// socket ready only when it parks, and a park with nothing to run moves the clock to the
/// next timer; with this one, never more than a millisecond at a time.
pub fn tick_finely() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// `count` connections to `address`, made one after the other: a burst of connections
/// beyond the listen backlog would have the kernel send SYNs again a second later, in
/// real time, while the paused clock runs on.
pub async fn connect(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(address).await.unwrap());
    }
    streams
}

/// Sends `request` on `stream` a byte a second until the server closes the connection;
/// returns how long that took (two minutes at most).
pub fn trickle(stream: TcpStream, request: &'static [u8]) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let start = Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            for byte in request {
                if writer.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            std::future::pending::<()>().await;
        });
        let mut buffer = [0; 1024];
        // until the end of the stream or a reset, or two minutes: the test stays bounded
        let closed = async { while let Ok(1..) = reader.read(&mut buffer).await {} };
        let _ = tokio::time::timeout(Duration::from_secs(120), closed).await;
        writing.abort();
        start.elapsed()
    })
}

/// The permission bits of `path`.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
/// Every file under `dir` is 0600 and every directory 0700, `dir` included.
pub fn assert_private_tree(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private_tree(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}
