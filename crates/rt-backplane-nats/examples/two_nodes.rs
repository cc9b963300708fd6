//! Two nodes in one process, sharing one NATS JetStream: a subscriber on node A receives what node B
//! publishes, then resumes on node B from its cursor.
//!
//! ```sh
//! cargo run -p rt-backplane-nats --example two_nodes -- nats://127.0.0.1:4222
//! ```

use std::sync::Arc;
use std::time::Duration;

use rt_backplane_nats::{NatsBackplane, NatsConfig};
use rt_core::{Channel, Delivery, Hub, HubConfig, NewEvent, Payload, Start};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let config = NatsConfig::new(url).prefix(format!("rt-example-{}", std::process::id()));
    let node = |config: NatsConfig| async move {
        let backplane = NatsBackplane::connect(config).await?;
        if !backplane.wait_until_up(Duration::from_secs(5)).await {
            return Err("NATS is not reachable".into());
        }
        Ok::<_, Box<dyn std::error::Error>>(Hub::new(Arc::new(backplane), HubConfig::default()))
    };
    let (a, b) = (node(config.clone()).await?, node(config).await?);
    let news = Channel::new("news")?;

    let mut on_a = a.subscribe([news.clone()], Start::Live).await?;
    for text in ["first", "second", "third"] {
        let ack = b
            .publish(NewEvent::new(news.clone(), Payload::text(text)))
            .await?;
        println!("node B published {text:?} at offset {}", ack.event.offset());
    }
    let Some(Delivery::Event(e)) = on_a.next().await else {
        return Err("no event".into());
    };
    println!(
        "node A received offset {}: {}",
        e.offset(),
        e.payload().to_json_string()
    );

    // The client moves to node B with its cursor and gets exactly what it had not seen.
    let cursor = on_a.cursor();
    drop(on_a);
    let mut on_b = b.subscribe([news], Start::Cursor(cursor.clone())).await?;
    println!("resuming on node B from cursor {cursor}");
    for _ in 0..2 {
        if let Some(Delivery::Event(e)) = on_b.next().await {
            println!(
                "node B delivered offset {}: {}",
                e.offset(),
                e.payload().to_json_string()
            );
        }
    }
    Ok(())
}
