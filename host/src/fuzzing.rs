//! Fuzz targets: every parser that sees untrusted bytes, each as one
//! function taking `&[u8]` that must never panic and must keep its
//! invariants (checked with `assert!`, so a broken invariant is a crash
//! the fuzzer reports).
//!
//! Two drivers call the same functions:
//! - `make fuzz` runs them under libFuzzer (`fuzz/`, cargo-fuzz on the
//!   stable toolchain), coverage-guided, for `FUZZ_SECONDS` each, and grows
//!   the corpus in `fuzz/corpus/<target>/`;
//! - `make test` replays the checked-in corpus and then feeds each target
//!   mutations of it for a few seconds (the tests below), so a regression
//!   is caught in CI without an instrumented build.
//!
//! Not a stable API: it exists for the fuzzers.

use std::collections::BTreeMap;

use crate::base::host_pattern::{HostPattern, check_host, normalize_host};
use crate::base::names::Name;
use crate::capabilities::dispatcher::fetch::take_options;
use crate::capabilities::http::addr::{Cidr, Host, denied_range, parse_host};
use crate::capabilities::http::config::PortRange;
use crate::store::{Hostnames, StoreResult};

/// A fuzz target: any input, no panic.
pub type Target = fn(&[u8]);

/// Every target, by name (the folder of its corpus).
pub const TARGETS: [(&str, Target); 7] = [
    ("host_header", host_header),
    ("egress_addr", egress_addr),
    ("config", config),
    ("admin_json", admin_json),
    ("asset_path", asset_path),
    ("names", names),
    ("dispatch_inputs", dispatch_inputs),
];

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// A `Host` header: bounded before routing; the built-in router names a
/// valid script or explains why not; dispatch patterns and a hostname
/// table match it without panicking.
pub fn host_header(data: &[u8]) {
    let host = text(data);
    let checked = check_host(host);
    if checked.is_ok() {
        let name = normalize_host(host);
        assert!(name.len() <= crate::base::host_pattern::MAX_HOST_LEN);
        if let Ok(script) = crate::routing::builtin::script_for_host(host) {
            let again = Name::new(script.as_str()).expect("the router returned an invalid name");
            assert_eq!(again.as_str(), script.as_str());
        }
        let table = Table::with(&[("shop.example.com", "shop"), ("*.example.com", "any")]);
        let ns = Name::new("ns").expect("static name");
        let _ = table.lookup(&ns, host);
    }
    for pattern in ["*.example.com", "example.com", host] {
        if let Ok(p) = HostPattern::parse(pattern) {
            let _ = p.matches(&normalize_host(host));
        }
    }
}

/// An in-memory hostname table for the matcher.
struct Table(BTreeMap<String, Name>);

impl Table {
    fn with(entries: &[(&str, &str)]) -> Self {
        Self(
            entries
                .iter()
                .map(|(h, s)| ((*h).to_owned(), Name::new(s).expect("static name")))
                .collect(),
        )
    }
}

impl Hostnames for Table {
    fn put_hostname(&self, _: &Name, _: &str, _: &Name) -> StoreResult<()> {
        Ok(())
    }
    fn delete_hostname(&self, _: &Name, _: &str) -> StoreResult<bool> {
        Ok(false)
    }
    fn get_hostname(&self, _: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        Ok(self.0.get(hostname).cloned())
    }
    fn list_hostnames(&self, _: &Name) -> StoreResult<Vec<(String, Name)>> {
        Ok(Vec::new())
    }
}

/// Egress addresses in every spelling, CIDRs, port ranges and rules: an
/// address that parses is classified; a parsed IP's denial never depends
/// on how it was written.
pub fn egress_addr(data: &[u8]) {
    let input = text(data);
    if let Ok(Host::Ip(ip)) = parse_host(input) {
        let verdict = denied_range(ip);
        if let Ok(Host::Ip(again)) = parse_host(&ip.to_string()) {
            assert_eq!(denied_range(again), verdict, "{input} vs {ip}");
        }
    }
    let _ = Cidr::parse(input);
    let _ = PortRange::parse(input);
    let rules = crate::base::egress_rules::EgressRules {
        allow: vec![input.to_owned()],
        deny: Vec::new(),
    };
    if let Ok(compiled) = rules.compile("script") {
        let _ = compiled.check(input, 443);
        let _ = compiled.check("example.com", 80);
    }
}

/// A `berth.toml`: parses and validates, or names the problem.
pub fn config(data: &[u8]) {
    match crate::config::Config::parse(text(data)) {
        Ok(config) => {
            let again = toml::to_string(&config).expect("a parsed config serializes");
            crate::config::Config::parse(&again).expect("a serialized config parses again");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// Admin API JSON bodies: settings merge patches (script and namespace),
/// upload metadata and asset manifests — the first byte picks which.
pub fn admin_json(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(patch) = serde_json::from_slice(body) {
                let _ = crate::base::settings::ScriptSettings::default().patched(&patch);
            }
        }
        1 => {
            if let Ok(patch) = serde_json::from_slice(body) {
                let _ = crate::base::settings::NamespaceSettings::default().patched(&patch);
            }
        }
        2 => {
            if let Ok(metadata) =
                serde_json::from_slice::<crate::base::metadata::ScriptMetadata>(body)
            {
                let _ = metadata.validate();
            }
        }
        _ => {
            if let Ok(manifest) = serde_json::from_slice(body) {
                let _ = crate::assets::check_manifest(&manifest);
            }
        }
    }
}

/// A request path against a script's assets (percent-decoding included) and
/// a manifest path.
pub fn asset_path(data: &[u8]) {
    let path = text(data);
    let entry = crate::store::AssetEntry {
        sha256: "0".repeat(64),
        size: 1,
    };
    let assets: BTreeMap<String, crate::store::AssetEntry> =
        ["/index.html", "/a/b.css", "/404.html"]
            .iter()
            .map(|p| ((*p).to_owned(), entry.clone()))
            .collect();
    use crate::base::records::{HtmlHandling, NotFoundHandling};
    for (html_handling, not_found_handling) in [
        (HtmlHandling::AutoTrailingSlash, NotFoundHandling::Page404),
        (HtmlHandling::None, NotFoundHandling::SinglePageApplication),
    ] {
        let config = crate::store::AssetConfig {
            html_handling,
            not_found_handling,
            run_worker_first: false,
        };
        if let Ok(Some(hit)) = crate::assets::find(&assets, &config, path) {
            assert!(assets.contains_key(&hit.path));
        }
    }
    if crate::assets::validate_path(path).is_ok() {
        assert!(path.starts_with('/'));
        assert!(
            !path.split('/').any(|seg| seg == ".." || seg == "."),
            "{path}"
        );
    }
    let _ = crate::assets::content_type(path);
}

/// Namespace and script names.
pub fn names(data: &[u8]) {
    if let Ok(name) = Name::new(text(data)) {
        assert!(name.as_str().len() <= crate::base::names::MAX_NAME_LEN);
        assert_eq!(Name::new(name.as_str()).ok().as_ref(), Some(&name));
    }
}

/// A dispatch worker's inputs: names, the fetch form's `berth-dispatch-*`
/// headers (limits, outbound parameters, host) and `get`'s limits as JSON.
pub fn dispatch_inputs(data: &[u8]) {
    let input = text(data);
    let mut headers = http::HeaderMap::new();
    for line in input.lines() {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    if take_options(&mut headers).is_ok() {
        assert!(
            headers
                .keys()
                .all(|k| !k.as_str().starts_with("berth-dispatch-")),
            "every berth-dispatch-* header is taken out"
        );
    }
    let _ = Name::new(input);
    let _ = crate::capabilities::http::outbound_header_name(input);
    let _ = serde_json::from_str::<crate::base::limits::CallLimits>(input);
}

#[cfg(test)]
mod tests {
    //! The CI driver: the checked-in corpus, then mutations of it for
    //! `BERTH_FUZZ_SECONDS` (default 2) per target.

    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::TARGETS;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .collect();
        inputs.push(Vec::new());
        inputs
    }

    /// xorshift64*: reproducible from its seed, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Interesting bytes for text parsers.
    const DICTIONARY: &[&[u8]] = &[
        b".",
        b":",
        b"/",
        b"%",
        b"*",
        b"[",
        b"]",
        b"-",
        b"0x",
        b"::ffff:",
        b"\xc3\xa9",
        b"..",
        b"%a",
        b"\n",
        b"=",
        b"\"",
        b"{",
        b"}",
    ];

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(out.len() + 1);
            match rng.below(5) {
                0 if !out.is_empty() => {
                    let i = rng.below(out.len());
                    out[i] = rng.next() as u8;
                }
                1 => {
                    let word = DICTIONARY[rng.below(DICTIONARY.len())];
                    out.splice(at..at, word.iter().copied());
                }
                2 if !out.is_empty() => {
                    let end = (at + rng.below(8)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                3 if !out.is_empty() && out.len() < 4096 => {
                    // Repeat a slice: long labels, many segments.
                    let start = rng.below(out.len());
                    let len = rng.below(out.len() - start) + 1;
                    let piece: Vec<u8> = out[start..start + len].to_vec();
                    for _ in 0..rng.below(64) {
                        out.extend_from_slice(&piece);
                    }
                }
                _ => out.insert(at, rng.next() as u8),
            }
        }
        out
    }

    #[test]
    fn every_target_survives_its_corpus_and_mutations_of_it() {
        let seconds: u64 = std::env::var("BERTH_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2);
        let seed = std::env::var("BERTH_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x005e_edf0_be27_u64);
        for (name, target) in TARGETS {
            let inputs = corpus(name);
            assert!(inputs.len() > 1, "{name}: the corpus is empty");
            for input in &inputs {
                target(input);
            }
            let mut rng = Rng(seed ^ name.len() as u64);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut runs = 0u64;
            while Instant::now() < deadline {
                let base = &inputs[rng.below(inputs.len())];
                let input = mutate(&mut rng, base);
                // A failing input is printed so it can join the corpus.
                let outcome = std::panic::catch_unwind(|| target(&input));
                assert!(
                    outcome.is_ok(),
                    "{name} panicked on {:?} (seed {seed})",
                    String::from_utf8_lossy(&input)
                );
                runs += 1;
            }
            assert!(runs > 0, "{name} never ran");
        }
    }
}
