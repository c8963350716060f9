//! A plain JavaScript upload: its modules, which one is the entry, its
//! bindings; the rules they must follow; and the build directory the
//! sandbox reads them from (the modules plus Berth's generated entry,
//! prelude and runtime under the reserved `__berth/`).
//!
//! Must never: write outside the build directory (module names are
//! relative paths of plain segments), or let a name reach the engine's
//! argument line with whitespace or quotes in it.

use std::path::Path;

use crate::base::Invalid;

/// Berth's Workers runtime (see the file's header).
const RUNTIME_JS: &str = include_str!("runtime.js");
/// Modules in one upload.
pub const MAX_MODULES: usize = 200;
/// Longest module name, bytes.
pub const MAX_MODULE_NAME: usize = 256;
/// The directory Berth's own modules live in; no upload may use it.
pub const RESERVED_DIR: &str = "__berth";

/// One JavaScript module of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsModule {
    /// Its path, as other modules import it (`index.js`, `lib/util.js`).
    pub name: String,
    /// The source text.
    pub source: String,
}

/// A plain JavaScript upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsBundle {
    /// The module the worker starts from (`export default { fetch }` or
    /// `addEventListener("fetch", ...)`).
    pub main_module: String,
    /// Every module, the main one included.
    pub modules: Vec<JsModule>,
    /// Names of `kv_namespace` bindings: each is the script's KV bucket.
    pub kv_bindings: Vec<String>,
}

impl JsBundle {
    /// A bundle of one module named `name`.
    pub fn single(name: impl Into<String>, source: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            main_module: name.clone(),
            modules: vec![JsModule {
                name,
                source: source.into(),
            }],
            kv_bindings: Vec::new(),
        }
    }

    /// Bytes of source in the bundle.
    pub fn source_bytes(&self) -> usize {
        self.modules.iter().map(|m| m.source.len()).sum()
    }

    /// Checks names, sizes and bindings; every failure names the entry.
    pub fn validate(&self, max_source_bytes: usize) -> Result<(), Invalid> {
        if self.modules.is_empty() {
            return Err(Invalid::from("the upload has no JavaScript module"));
        }
        if self.modules.len() > MAX_MODULES {
            return Err(Invalid(format!(
                "at most {MAX_MODULES} modules per script, got {}",
                self.modules.len()
            )));
        }
        let total = self.source_bytes();
        if total > max_source_bytes {
            return Err(Invalid(format!(
                "the modules hold {} KiB of source; at most {} KiB per script (js.max_source_kb)",
                total >> 10,
                max_source_bytes >> 10
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for module in &self.modules {
            validate_module_name(&module.name)?;
            if !seen.insert(module.name.as_str()) {
                return Err(Invalid(format!("module {:?} appears twice", module.name)));
            }
        }
        if !seen.contains(self.main_module.as_str()) {
            return Err(Invalid(format!(
                "main_module {:?} is not one of the uploaded modules ({})",
                self.main_module,
                self.modules
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for name in &self.kv_bindings {
            crate::base::metadata::validate_var_name(name)
                .map_err(|e| Invalid(format!("kv_namespace binding {name:?}: {e}")))?;
        }
        if self.kv_bindings.len() > 1 {
            return Err(Invalid(format!(
                "Berth gives each script one KV bucket: declare at most one kv_namespace binding (got {})",
                self.kv_bindings.join(", ")
            )));
        }
        Ok(())
    }

    /// Writes the modules and Berth's own files into `dir` (empty); returns
    /// the entry module's path relative to `dir`.
    pub fn write_to(&self, dir: &Path, initializer: &[u8]) -> std::io::Result<String> {
        for module in &self.modules {
            let path = dir.join(&module.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &module.source)?;
        }
        let own = dir.join(RESERVED_DIR);
        std::fs::create_dir_all(&own)?;
        std::fs::write(own.join("initializer.js"), initializer)?;
        std::fs::write(own.join("runtime.js"), RUNTIME_JS)?;
        let bindings = serde_json::json!({ "kv": self.kv_bindings });
        std::fs::write(
            own.join("prelude.js"),
            format!("import {{ install }} from \"./runtime.js\";\ninstall({bindings});\n"),
        )?;
        std::fs::write(
            own.join("entry.js"),
            format!(
                "import \"./prelude.js\";\nimport * as worker from \"../{}\";\nimport {{ serve }} from \"./runtime.js\";\nserve(worker);\n",
                self.main_module
            ),
        )?;
        Ok(format!("{RESERVED_DIR}/entry.js"))
    }
}

/// A module name: a relative path of plain segments (`[A-Za-z0-9._-]`, no
/// `.` or `..`), not under `__berth/`.
pub fn validate_module_name(name: &str) -> Result<(), Invalid> {
    let bad = |why: &str| Err(Invalid(format!("module name {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_MODULE_NAME {
        return bad("longer than 256 bytes");
    }
    if name.starts_with('/') {
        return bad("must be relative");
    }
    for segment in name.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad("empty, `.` and `..` path segments are not allowed");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad("only letters, digits, `.`, `_`, `-` and `/` are allowed");
        }
    }
    if name == RESERVED_DIR || name.starts_with(&format!("{RESERVED_DIR}/")) {
        return bad("`__berth/` is reserved for Berth's own modules");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_plain_relative_paths() {
        for ok in ["index.js", "src/lib/util.mjs", "a-b_c.1.js"] {
            validate_module_name(ok).expect(ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "../up.js",
            "a/../b.js",
            "./a.js",
            "a//b.js",
            "with space.js",
            "quote\".js",
            "__berth/entry.js",
            "__berth",
            "ünï.js",
        ] {
            assert!(validate_module_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bundles_name_what_is_wrong() {
        let b = JsBundle::single("index.js", "export default {}");
        b.validate(1 << 20).expect("valid");
        let e = b.validate(4).expect_err("too large");
        assert!(e.0.contains("js.max_source_kb"), "{e}");

        let mut missing = b.clone();
        missing.main_module = "main.js".into();
        assert!(
            missing
                .validate(1 << 20)
                .expect_err("main")
                .0
                .contains("main_module")
        );

        let mut twice = b.clone();
        twice.modules.push(twice.modules[0].clone());
        assert!(
            twice
                .validate(1 << 20)
                .expect_err("dup")
                .0
                .contains("twice")
        );

        let mut two_kv = b.clone();
        two_kv.kv_bindings = vec!["A".into(), "B".into()];
        assert!(
            two_kv
                .validate(1 << 20)
                .expect_err("kv")
                .0
                .contains("one KV bucket")
        );

        let mut bad_kv = b;
        bad_kv.kv_bindings = vec!["not valid".into()];
        assert!(bad_kv.validate(1 << 20).is_err());
    }

    #[test]
    fn the_build_dir_holds_the_modules_and_berths_entry() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = JsBundle::single("src/index.js", "export default {}");
        b.modules.push(JsModule {
            name: "src/lib.js".into(),
            source: "export const x = 1;".into(),
        });
        b.kv_bindings = vec!["MY_KV".into()];
        let entry = b.write_to(dir.path(), b"// bindings").expect("write");
        assert_eq!(entry, "__berth/entry.js");
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).expect(p);
        assert_eq!(read("src/lib.js"), "export const x = 1;");
        assert!(read("__berth/entry.js").contains("\"../src/index.js\""));
        assert!(read("__berth/prelude.js").contains("\"MY_KV\""));
        assert_eq!(read("__berth/initializer.js"), "// bindings");
    }
}
