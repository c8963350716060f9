//! The records watch: keeps a host's [`Mirror`](super::mirror::Mirror) in
//! step with the records bucket.
//!
//! The first watch delivers the latest revision of every key; later ones
//! start right after the last revision applied, so after a disconnect (the
//! client's `Connected` event) or a watch error the host catches up on
//! exactly what it missed and nothing is applied twice out of order. The
//! start-up `ready` signal fires once the first pass reached the revision
//! the bucket had when it began.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use futures::StreamExt;
use tokio::sync::{Notify, oneshot};

use super::Inner;

/// Pause before watching again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// An ordered consumer over the records stream: the latest revision of
/// every key on the first pass (`last == 0`), else every message after
/// `last`. (The client's own KV watch never delivers against
/// nats-server 2.9, so the consumer is built here.)
async fn subscribe(inner: &Inner, last: u64) -> Result<Ordered, async_nats::Error> {
    let deliver_policy = if last == 0 {
        DeliverPolicy::LastPerSubject
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: last + 1,
        }
    };
    let consumer = inner
        .records
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: inner.client.new_inbox(),
            filter_subject: format!("{}>", inner.records.prefix),
            deliver_policy,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// Runs until the store's runtime shuts down.
pub(super) async fn run(inner: Arc<Inner>, reconnected: Arc<Notify>, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut last = 0u64;
    loop {
        // What the bucket holds now: the first pass is complete once it
        // has applied this revision.
        let target = match inner.records.stream.clone().info().await {
            Ok(info) => info.state.last_sequence,
            Err(error) => {
                tracing::debug!(%error, "records watch: cannot read the stream; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if target <= last {
            inner.mirror.watched_up_to(target);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        }
        let mut watch = match subscribe(&inner, last).await {
            Ok(watch) => watch,
            Err(error) => {
                tracing::debug!(%error, "records watch: cannot start; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                message = watch.next() => match message {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let (revision, pending) = (info.stream_sequence, info.pending);
                        let Some(key) = message.subject.as_str().strip_prefix(inner.records.prefix.as_str()) else {
                            continue;
                        };
                        // Puts carry no operation header; deletions and
                        // purges say so.
                        let deleted = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("KV-Operation"))
                            .is_some();
                        let value = (!deleted).then(|| message.payload.clone());
                        inner.applied(key, revision, value);
                        last = last.max(revision);
                        if pending == 0 || last >= target {
                            inner.mirror.watched_up_to(last);
                        }
                        if last >= target && let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, last, "records watch failed; resuming");
                        break;
                    }
                    None => break,
                },
                _ = reconnected.notified() => {
                    tracing::info!(last, "reconnected to NATS; resuming the records watch");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
