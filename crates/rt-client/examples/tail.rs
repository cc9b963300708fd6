//! Follows channels of a running rt server and prints every event once, resuming across
//! reconnects; with `--say TEXT`, first publishes TEXT on the first channel.
//!
//! ```sh
//! cargo run --release -p rt-server -- --dev              # in one terminal
//! cargo run -p rt-client --example tail -- http://127.0.0.1:8080 news sport --say hello
//! ```
//!
//! `RT_TOKEN` (if set) is sent as the bearer token; `RT_CURSOR` resumes from a cursor printed
//! by an earlier run (each event line ends with the cursor to resume after it).

use futures_util::StreamExt;
use rt_client::{Client, Data, Message, Update};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let say = match args.iter().position(|a| a == "--say") {
        Some(i) if i + 1 < args.len() => {
            let text = args.remove(i + 1);
            args.remove(i);
            Some(text)
        }
        _ => None,
    };
    if args.len() < 2 {
        eprintln!("usage: tail <server url> <channel>... [--say TEXT]");
        std::process::exit(2);
    }
    let url = args.remove(0);
    let mut client = Client::connect(url);
    if let Ok(token) = std::env::var("RT_TOKEN") {
        client = client.token(token);
    }
    if let Ok(cursor) = std::env::var("RT_CURSOR") {
        client = client.cursor(cursor);
    }
    let mut sub = client.subscribe(&args).await?;
    if let Some(text) = say {
        let ack = sub.publish(Message::text(&args[0], text)).await?;
        eprintln!("published as {}#{}", ack.channel, ack.offset);
    }
    while let Some(update) = sub.next().await {
        match update {
            Update::Event(e) => {
                let data = match &e.data {
                    Data::Text(s) => s.clone(),
                    Data::Binary(b) => format!("<{} bytes>", b.len()),
                };
                let cursor = sub.cursor().unwrap_or_default();
                println!("{}#{} {} {data}  [{cursor}]", e.channel, e.offset, e.name);
            }
            Update::Resync { channels, .. } => {
                eprintln!("events were missed on {channels:?}: reload their state")
            }
            Update::Open {
                transport,
                recovered,
            } => eprintln!("open over {transport} (recovered: {recovered})"),
            Update::Retrying {
                transport,
                error,
                retry_in,
            } => eprintln!("{transport}: {error}; next attempt in {retry_in:.1?}"),
            other => eprintln!("{other:?}"),
        }
    }
    Ok(())
}
