//! The reserved `dispatch.internal` domain: requests for it are never sent
//! to the network. A dispatch worker's `fetch()` of
//! `http://<script>.dispatch.internal/` runs that user worker; every other
//! guest is refused. Pure parsing only; the egress hooks and the dispatcher
//! capability both ask it.

/// The reserved domain.
pub const DISPATCH_DOMAIN: &str = "dispatch.internal";

/// What a request to the reserved domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `<script>.dispatch.internal`: run that user worker.
    Script(String),
    /// `dispatch.internal` itself: the control endpoints (hostname lookup).
    Control,
}

/// Which reserved target `host` names, if any (case-insensitive; a trailing
/// dot is ignored, so the name cannot be dodged with `…internal.`).
pub fn reserved_target(host: &str) -> Option<Target> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == DISPATCH_DOMAIN {
        return Some(Target::Control);
    }
    let script = host.strip_suffix(DISPATCH_DOMAIN)?.strip_suffix('.')?;
    Some(Target::Script(script.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_reserved_domain_in_any_case() {
        assert_eq!(
            reserved_target("customer-a.dispatch.internal"),
            Some(Target::Script("customer-a".into()))
        );
        assert_eq!(
            reserved_target("Customer-A.DISPATCH.Internal."),
            Some(Target::Script("customer-a".into()))
        );
        assert_eq!(reserved_target("dispatch.internal"), Some(Target::Control));
        assert_eq!(
            reserved_target("a.b.dispatch.internal"),
            Some(Target::Script("a.b".into())),
            "still reserved; the name is then refused as not found"
        );
        assert_eq!(reserved_target("xdispatch.internal"), None);
        assert_eq!(reserved_target("dispatch.internal.example.com"), None);
        assert_eq!(reserved_target("example.com"), None);
    }
}
