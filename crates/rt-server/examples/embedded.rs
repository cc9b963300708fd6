//! rt-server embedded in a program: bind on a free port, subscribe in-process through the
//! hub, publish over HTTP like a backend would, then shut down gracefully.
//!
//! ```sh
//! cargo run -p rt-server --example embedded
//! ```

use rt_core::{Channel, Delivery, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = rt_server::Config::try_load_from([
        "rt-server",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        "example-key",
    ])?;
    let server = rt_server::Server::bind(config).await?;
    let addr = server.local_addr();
    let mut sub = server
        .hub()
        .subscribe([Channel::new("news")?], Start::Live)
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // A backend publishes through the HTTP API.
    let body = r#"{"channel":"news","data":"hello from HTTP"}"#;
    let mut http = tokio::net::TcpStream::connect(addr).await?;
    http.write_all(
        format!(
            "POST /api/publish HTTP/1.1\r\nhost: {addr}\r\nx-api-key: example-key\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    http.read_to_string(&mut answer).await?;
    println!(
        "publish answered: {}",
        answer.lines().last().unwrap_or_default()
    );

    if let Some(Delivery::Event(event)) = sub.next().await {
        println!(
            "subscriber got offset {}: {:?}",
            event.offset(),
            event.payload()
        );
    }

    let _ = stop.send(());
    running.await??;
    println!("shut down");
    Ok(())
}
