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
    /// Memory the host holds for one instance outside its linear memory
    /// (buffered bodies, handles, KV values in flight, captured output),
    /// MiB.
    #[serde(default)]
    pub host_memory_mb: Option<u64>,
    /// Fuel (Wasmtime's deterministic instruction meter) per request;
    /// effective only on hosts that meter fuel (`[limits] fuel` set).
    #[serde(default)]
    pub fuel: Option<u64>,
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
            ("host_memory_mb", self.host_memory_mb),
            ("fuel", self.fuel),
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
    /// Memory the host may hold for one instance outside its linear memory,
    /// MiB (see `limits::host_memory`). Unset: the instance's own
    /// `memory_mb`, so the host never holds more for a guest than the guest
    /// may hold itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_memory_mb: Option<u64>,
    /// Fuel per request. Setting it turns on Wasmtime's fuel metering for
    /// the whole engine (compiled code counts instructions; it is off by
    /// default because the counting costs time on every request); scripts
    /// can then lower it with their own `fuel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// What a script's KV bucket may hold, all levels combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Keys.
    pub max_keys: u64,
    /// Bytes of keys and values.
    pub max_bytes: u64,
}

impl HostLimits {
    /// Checks `[limits]`, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        super::require_positive(
            "limits",
            &[
                ("cpu_ms", self.cpu_ms),
                ("wall_ms", self.wall_ms),
                ("memory_mb", self.memory_mb),
                ("max_request_body_mb", self.max_request_body_mb),
                ("max_response_body_mb", self.max_response_body_mb),
                ("max_concurrency", self.max_concurrency as u64),
            ],
        )?;
        for (key, value) in [("host_memory_mb", self.host_memory_mb), ("fuel", self.fuel)] {
            if value == Some(0) {
                return Err(Invalid(format!(
                    "limits.{key} must be greater than 0 (leave it out for the default)"
                )));
            }
        }
        Ok(())
    }
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
            host_memory_mb: None,
            fuel: None,
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
    /// Host memory the instance may hold outside its linear memory, bytes.
    pub host_memory_bytes: usize,
    /// Fuel budget, when the host meters fuel.
    pub fuel: Option<u64>,
    /// The script's KV bucket quota.
    pub kv: KvQuota,
}

const MIB: u64 = 1 << 20;

impl HostLimits {
    /// Combines the host level with a script's settings and a call's
    /// options: the minimum of every level wins.
    pub fn effective(&self, script: &ScriptLimits, call: &CallLimits) -> Effective {
        let call = script.call().tighten(*call);
        let min = |host: u64, other: Option<u64>| other.map_or(host, |v| v.min(host));
        let memory_mb = min(self.memory_mb, call.memory_mb);
        // Tied to the instance's own memory unless the host says otherwise;
        // a script can only lower it.
        let host_memory_mb = min(
            self.host_memory_mb.unwrap_or(memory_mb),
            script.host_memory_mb,
        );
        Effective {
            cpu: Duration::from_millis(min(self.cpu_ms, call.cpu_ms)),
            wall: Duration::from_millis(min(self.wall_ms, call.wall_ms)),
            memory_bytes: (memory_mb * MIB) as usize,
            subrequests: call
                .subrequests
                .map_or(self.subrequests, |v| v.min(self.subrequests)),
            max_request_body: min(self.max_request_body_mb, script.max_request_body_mb) * MIB,
            max_response_body: min(self.max_response_body_mb, script.max_response_body_mb) * MIB,
            host_memory_bytes: (host_memory_mb * MIB) as usize,
            // Only a host that meters fuel can enforce a script's budget.
            fuel: self.fuel.map(|host| min(host, script.fuel)),
            kv: self.kv_quota(script),
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
    fn host_memory_follows_memory_unless_set_and_scripts_only_lower_it() {
        let host = HostLimits {
            memory_mb: 64,
            ..HostLimits::default()
        };
        let none = CallLimits::default();
        let plain = ScriptLimits::default();
        assert_eq!(host.effective(&plain, &none).host_memory_bytes, 64 << 20);
        // A script (or call) lowering memory_mb lowers the tied default.
        let small = ScriptLimits {
            memory_mb: Some(16),
            ..Default::default()
        };
        assert_eq!(host.effective(&small, &none).host_memory_bytes, 16 << 20);
        // Its own setting can lower it, never raise it past the host's.
        let raise = ScriptLimits {
            host_memory_mb: Some(4096),
            ..Default::default()
        };
        assert_eq!(host.effective(&raise, &none).host_memory_bytes, 64 << 20);
        let set = HostLimits {
            host_memory_mb: Some(32),
            ..host.clone()
        };
        assert_eq!(set.effective(&plain, &none).host_memory_bytes, 32 << 20);
        assert_eq!(set.effective(&raise, &none).host_memory_bytes, 32 << 20);
        let lower = ScriptLimits {
            host_memory_mb: Some(8),
            ..Default::default()
        };
        assert_eq!(set.effective(&lower, &none).host_memory_bytes, 8 << 20);
    }

    #[test]
    fn fuel_is_the_minimum_of_host_and_script_and_off_without_the_host() {
        let none = CallLimits::default();
        let script = ScriptLimits {
            fuel: Some(5_000),
            ..Default::default()
        };
        let off = HostLimits::default();
        assert_eq!(off.effective(&script, &none).fuel, None, "no metering");
        let on = HostLimits {
            fuel: Some(1_000_000),
            ..HostLimits::default()
        };
        assert_eq!(on.effective(&script, &none).fuel, Some(5_000));
        assert_eq!(
            on.effective(&ScriptLimits::default(), &none).fuel,
            Some(1_000_000)
        );
        let greedy = ScriptLimits {
            fuel: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(on.effective(&greedy, &none).fuel, Some(1_000_000));
        let zero = ScriptLimits {
            fuel: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().0.contains("fuel"));
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
