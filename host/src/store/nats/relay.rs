//! Live tail across hosts over core NATS subjects (no JetStream: tail
//! events are ephemeral and never stored).
//!
//! - `<prefix>.tail.interest`: a host tailing a script announces
//!   `ns/script` about once a second while its tail is open; every host
//!   remembers announcements for a few seconds.
//! - `<prefix>.tail.events.<ns>.<script>`: each host publishes its events
//!   of a script here only while some other host announced interest in it,
//!   so untailed scripts cost nothing on the wire.
//!
//! Messages carry the sending host's random id (header `berth-host`) so a
//! host never delivers its own events twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::base::names::Name;
use crate::base::tail_relay::TailRelay;

/// How often an open tail announces itself.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement counts.
const INTEREST_TTL: Duration = Duration::from_secs(3);
/// Header naming the sending host.
const HOST_HEADER: &str = "berth-host";

/// [`TailRelay`] over a NATS connection.
#[derive(Clone)]
pub struct NatsTailRelay {
    shared: Arc<Shared>,
}

struct Shared {
    client: async_nats::Client,
    prefix: String,
    handle: tokio::runtime::Handle,
    host: String,
    interest: Mutex<HashMap<String, Instant>>,
}

impl NatsTailRelay {
    /// A relay on `client`, listening for interest from now on.
    pub(super) fn new(
        client: async_nats::Client,
        prefix: String,
        handle: tokio::runtime::Handle,
    ) -> Self {
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let shared = Arc::new(Shared {
            client,
            prefix,
            handle: handle.clone(),
            host: hex::encode(id),
            interest: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&shared);
        let (client, subject) = (shared.client.clone(), shared.interest_subject());
        handle.spawn(async move {
            let Ok(mut announcements) = client.subscribe(subject).await else {
                tracing::warn!("cannot subscribe to tail interest; other hosts' tails will miss this host's events");
                return;
            };
            while let Some(message) = announcements.next().await {
                let Some(shared) = weak.upgrade() else { break };
                if shared.sent_by_me(&message) {
                    continue;
                }
                let key = String::from_utf8_lossy(&message.payload).into_owned();
                let mut interest = shared.interest.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                interest.retain(|_, until| *until > now);
                interest.insert(key, now + INTEREST_TTL);
            }
        });
        Self { shared }
    }
}

impl Shared {
    fn interest_subject(&self) -> String {
        format!("{}.tail.interest", self.prefix)
    }

    fn events_subject(&self, namespace: &Name, script: &Name) -> String {
        format!("{}.tail.events.{namespace}.{script}", self.prefix)
    }

    fn headers(&self) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HOST_HEADER, self.host.as_str());
        headers
    }

    fn sent_by_me(&self, message: &async_nats::Message) -> bool {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(HOST_HEADER))
            .is_some_and(|h| h.as_str() == self.host)
    }
}

impl TailRelay for NatsTailRelay {
    fn remote_interest(&self, namespace: &Name, script: &Name) -> bool {
        let key = format!("{namespace}/{script}");
        let interest = self
            .shared
            .interest
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        interest
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
    }

    fn send(&self, namespace: &Name, script: &Name, line: Bytes) {
        let shared = self.shared.clone();
        let subject = shared.events_subject(namespace, script);
        self.shared.handle.spawn(async move {
            let _ = shared
                .client
                .publish_with_headers(subject, shared.headers(), line)
                .await;
        });
    }

    fn listen(
        &self,
        namespace: &Name,
        script: &Name,
        deliver: Box<dyn Fn(Option<Bytes>) -> bool + Send + Sync>,
    ) {
        let shared = self.shared.clone();
        let subject = shared.events_subject(namespace, script);
        let announcement = Bytes::from(format!("{namespace}/{script}"));
        self.shared.handle.spawn(async move {
            let mut events = match shared.client.subscribe(subject).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "cannot tail other hosts");
                    return;
                }
            };
            let mut every = tokio::time::interval(ANNOUNCE_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        if !deliver(None) {
                            break;
                        }
                        let _ = shared
                            .client
                            .publish_with_headers(
                                shared.interest_subject(),
                                shared.headers(),
                                announcement.clone(),
                            )
                            .await;
                    }
                    message = events.next() => match message {
                        Some(message) if shared.sent_by_me(&message) => {}
                        Some(message) => {
                            if !deliver(Some(message.payload)) {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
    }
}
