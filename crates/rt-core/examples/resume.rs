//! Publish, disconnect, publish more, resume from the cursor: nothing lost, nothing repeated.

use std::sync::Arc;

use rt_core::{
    Channel, Delivery, Error, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention, Start,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    let (prices, trades) = (Channel::new("prices")?, Channel::new("trades")?);

    let mut sub = hub
        .subscribe([prices.clone(), trades.clone()], Start::Live)
        .await?;
    hub.publish(NewEvent::new(prices.clone(), Payload::text("101.5")))
        .await?;
    if let Some(Delivery::Event(e)) = sub.next().await {
        println!(
            "live:     {} #{} {:?}",
            e.channel(),
            e.offset(),
            e.payload()
        );
    }
    let cursor = sub.cursor().to_string();
    drop(sub);
    println!("disconnected at cursor {cursor}");

    hub.publish(NewEvent::new(trades.clone(), Payload::text("buy 3")))
        .await?;
    hub.publish(NewEvent::new(prices.clone(), Payload::text("101.7")))
        .await?;

    let mut sub = hub
        .subscribe([prices, trades], Start::parse(Some(&cursor))?)
        .await?;
    while let Some(Delivery::Event(e)) = sub.try_next() {
        println!(
            "replayed: {} #{} {:?}",
            e.channel(),
            e.offset(),
            e.payload()
        );
    }
    println!("resume from {}", sub.cursor());
    Ok(())
}
