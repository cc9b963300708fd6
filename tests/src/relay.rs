//! A TCP relay between test clients and the server that can turn into a blackhole, to make
//! half-open connections for real on loopback: a client that vanishes without FIN or RST.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Receive buffer of the relay's server-side sockets. Fixed and small (no autotuning), so the
/// server's writes stall after little data once the relay stops reading.
const SERVER_SIDE_RCVBUF: u32 = 16 * 1024;

/// Forwards every connection made to [`Relay::addr`] to the upstream address, byte for byte,
/// until [`Relay::blackhole`]. Stops (closing everything) when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    blackholed: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// A relay on a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (blackholed, watch) = watch::channel(false);
        let accept = tokio::spawn(async move {
            // Pumps live as long as the accept task: aborting it drops the set, which aborts
            // them and closes their sockets.
            let mut pumps = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let socket = TcpSocket::new_v4().expect("socket");
                socket
                    .set_recv_buffer_size(SERVER_SIDE_RCVBUF)
                    .expect("SO_RCVBUF");
                let Ok(server) = socket.connect(upstream).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_r, client_w) = client.into_split();
                let (server_r, server_w) = server.into_split();
                pumps.spawn(pump(client_r, server_w, watch.clone()));
                pumps.spawn(pump(server_r, client_w, watch.clone()));
            }
        });
        Relay {
            addr,
            blackholed,
            accept,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://relay{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `ws://relay{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// From now on, nothing is read from either side nor forwarded, and every socket stays
    /// open: to the server, its clients have vanished without a trace (their kernels still
    /// acknowledge what fits in the buffers, as a peer whose machine is gone does not).
    pub fn blackhole(&self) {
        let _ = self.blackholed.send(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until the blackhole, then holds both halves open, reading nothing.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut blackholed: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *blackholed.borrow() {
            break;
        }
        tokio::select! {
            biased;
            _ = blackholed.changed() => {}
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    // Blackholed: keep the sockets open and silent until the relay is dropped.
    std::future::pending::<()>().await;
    drop((from, to));
}
