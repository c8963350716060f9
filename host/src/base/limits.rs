//! Limit policy: what each level (host `[limits]`, script settings, one
//! call) may say, and how the levels combine into the [`Effective`] limits
//! of one invocation — the minimum of every level always wins.
//!
//! Pure data and arithmetic: nothing here touches Wasmtime, the clock or
//! the network, so the rules are unit-tested on their own. Enforcement
//! lives beside it in [`crate::limits`].

use std::time::Duration;

use super::Invalid;

/// Optional limits for one invocation; `None` means "no limit at this level".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallLimits {
    /// CPU time the guest may execute, in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Wall-clock time of the whole invocation, in milliseconds.
    pub wall_ms: Option<u64>,
    /// Linear memory of the instance, in MiB.
    pub memory_mb: Option<u64>,
    /// Outbound requests per invocation.
    pub subrequests: Option<u32>,
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CallLimits {
    /// Combines two levels: each limit is the smaller of the two, so a
    /// level can tighten but never loosen another.
    pub fn tighten(self, other: CallLimits) -> CallLimits {
        CallLimits {
            cpu_ms: min_opt(self.cpu_ms, other.cpu_ms),
            wall_ms: min_opt(self.wall_ms, other.wall_ms),
            memory_mb: min_opt(self.memory_mb, other.memory_mb),
            subrequests: min_opt(self.subrequests, other.subrequests),
        }
    }
}

/// Limits a script's settings may carry (`settings.limits`, upload
/// metadata `limits`). Each is optional; the host's `[limits]` apply where
/// unset, and a script can only tighten them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimits {
    /// CPU time per request, ms.
    #[serde(default)]
    pub cpu_ms: Option<u64>,
    /// Wall-clock time per request, ms.
    #[serde(default)]
    pub wall_ms: Option<u64>,
    /// Linear memory per instance, MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Outbound requests per request.
    #[serde(default)]
    pub subrequests: Option<u32>,
    /// Largest request body, MiB.
    #[serde(default)]
    pub max_request_body_mb: Option<u64>,
    /// Largest response body, MiB.
    #[serde(default)]
    pub max_response_body_mb: Option<u64>,
    /// Requests of this script running at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Keys in the script's KV bucket.
    #[serde(default)]
    pub kv_max_keys: Option<u64>,
    /// Bytes (keys and values) in the script's KV bucket, MiB.
    #[serde(default)]
    pub kv_max_mb: Option<u64>,
}

impl ScriptLimits {
    /// Rejects zero values, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        let values = [
            ("cpu_ms", self.cpu_ms),
            ("wall_ms", self.wall_ms),
            ("memory_mb", self.memory_mb),
            ("max_request_body_mb", self.max_request_body_mb),
            ("max_response_body_mb", self.max_response_body_mb),
            ("max_concurrency", self.max_concurrency.map(u64::from)),
            ("kv_max_keys", self.kv_max_keys),
            ("kv_max_mb", self.kv_max_mb),
        ];
        for (key, value) in values {
            if value == Some(0) {
                return Err(Invalid(format!("limits.{key} must be greater than 0")));
            }
        }
        Ok(())
    }

    /// The per-call subset.
    pub fn call(&self) -> CallLimits {
        CallLimits {
            cpu_ms: self.cpu_ms,
            wall_ms: self.wall_ms,
            memory_mb: self.memory_mb,
            subrequests: self.subrequests,
        }
    }
}

/// `[limits]`: the host's defaults, which are also ceilings — a script or a
/// dispatch worker can lower each value for its requests, never raise it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostLimits {
    /// CPU time per request, ms.
    pub cpu_ms: u64,
    /// Wall-clock time per request (including I/O and streaming the
    /// response body), ms.
    pub wall_ms: u64,
    /// Linear memory per instance, MiB (at most `runtime.max_memory_mb`).
    pub memory_mb: u64,
    /// Outbound requests per request.
    pub subrequests: u32,
    /// Largest request body, MiB.
    pub max_request_body_mb: u64,
    /// Largest response body, MiB.
    pub max_response_body_mb: u64,
    /// Requests of one script running at once.
    pub max_concurrency: u32,
    /// Requests of one script waiting for a concurrency slot; beyond it they
    /// are refused with `overloaded` at once.
    pub max_queue: u32,
    /// How long a request may wait in the queue before `overloaded`, ms.
    pub queue_timeout_ms: u64,
    /// `false` switches off CPU accounting, body caps and admission control
    /// (for measuring their cost, or a trusted single tenant). The wall-clock
    /// deadline, memory cap and epoch yields stay. Never for hostile code.
    pub enforce: bool,
    /// Keys one script's KV bucket may hold.
    pub kv_max_keys: u64,
    /// Bytes (keys and values) one script's KV bucket may hold, MiB.
    pub kv_max_mb: u64,
}

/// What a script's KV bucket may hold, all levels combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Keys.
    pub max_keys: u64,
    /// Bytes of keys and values.
    pub max_bytes: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            cpu_ms: 1_000,
            wall_ms: 30_000,
            memory_mb: 128,
            subrequests: 50,
            max_request_body_mb: 100,
            max_response_body_mb: 512,
            max_concurrency: 64,
            max_queue: 256,
            queue_timeout_ms: 5_000,
            enforce: true,
            kv_max_keys: 10_000,
            kv_max_mb: 64,
        }
    }
}

/// The limits one invocation runs under, all levels combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// CPU budget.
    pub cpu: Duration,
    /// Wall-clock budget.
    pub wall: Duration,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Outbound request cap.
    pub subrequests: u32,
    /// Request body cap, bytes.
    pub max_request_body: u64,
    /// Response body cap, bytes.
    pub max_response_body: u64,
}

const MIB: u64 = 1 << 20;

impl HostLimits {
    /// Combines the host level with a script's settings and a call's
    /// options: the minimum of every level wins.
    pub fn effective(&self, script: &ScriptLimits, call: &CallLimits) -> Effective {
        let call = script.call().tighten(*call);
        let min = |host: u64, other: Option<u64>| other.map_or(host, |v| v.min(host));
        Effective {
            cpu: Duration::from_millis(min(self.cpu_ms, call.cpu_ms)),
            wall: Duration::from_millis(min(self.wall_ms, call.wall_ms)),
            memory_bytes: (min(self.memory_mb, call.memory_mb) * MIB) as usize,
            subrequests: call
                .subrequests
                .map_or(self.subrequests, |v| v.min(self.subrequests)),
            max_request_body: min(self.max_request_body_mb, script.max_request_body_mb) * MIB,
            max_response_body: min(self.max_response_body_mb, script.max_response_body_mb) * MIB,
        }
    }

    /// The KV quota of a script: the host's, tightened by the script's.
    pub fn kv_quota(&self, script: &ScriptLimits) -> KvQuota {
        let min = |host: u64, other: Option<u64>| other.map_or(host, |v| v.min(host));
        KvQuota {
            max_keys: min(self.kv_max_keys, script.kv_max_keys),
            max_bytes: min(self.kv_max_mb, script.kv_max_mb) * MIB,
        }
    }

    /// Concurrency cap of a script.
    pub fn concurrency(&self, script: &ScriptLimits) -> u32 {
        script
            .max_concurrency
            .map_or(self.max_concurrency, |v| v.min(self.max_concurrency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighten_takes_the_minimum_of_each_limit() {
        let host = CallLimits {
            cpu_ms: Some(50),
            wall_ms: Some(30_000),
            memory_mb: Some(128),
            subrequests: None,
        };
        let call = CallLimits {
            cpu_ms: Some(500),
            wall_ms: Some(100),
            memory_mb: None,
            subrequests: Some(3),
        };
        let both = host.tighten(call);
        assert_eq!(
            both,
            CallLimits {
                cpu_ms: Some(50),
                wall_ms: Some(100),
                memory_mb: Some(128),
                subrequests: Some(3)
            }
        );
        assert_eq!(both.tighten(CallLimits::default()), both);
    }

    #[test]
    fn effective_limits_take_the_minimum_of_all_levels() {
        let host = HostLimits::default();
        let script = ScriptLimits {
            cpu_ms: Some(50),
            memory_mb: Some(4096),
            max_request_body_mb: Some(1),
            ..Default::default()
        };
        let call = CallLimits {
            cpu_ms: Some(500),
            wall_ms: Some(100),
            memory_mb: None,
            subrequests: Some(3),
        };
        let e = host.effective(&script, &call);
        assert_eq!(e.cpu, Duration::from_millis(50)); // script beats call
        assert_eq!(e.wall, Duration::from_millis(100)); // call beats host
        assert_eq!(e.memory_bytes, 128 << 20); // host ceiling beats script
        assert_eq!(e.subrequests, 3);
        assert_eq!(e.max_request_body, 1 << 20);
        assert_eq!(e.max_response_body, 512 << 20);
        assert_eq!(
            host.concurrency(&ScriptLimits {
                max_concurrency: Some(1000),
                ..Default::default()
            }),
            64
        );
        assert_eq!(
            host.concurrency(&ScriptLimits {
                max_concurrency: Some(2),
                ..Default::default()
            }),
            2
        );
    }

    #[test]
    fn script_limits_name_bad_keys() {
        let err = serde_json::from_str::<ScriptLimits>(r#"{"cpu":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu"), "{err}");
        let zero = ScriptLimits {
            max_concurrency: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().0.contains("max_concurrency"));
    }
}
