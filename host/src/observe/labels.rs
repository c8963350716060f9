//! The label set every per-script series shares (namespace and script),
//! in a file of its own so that the metrics and the history, which both
//! key by it, need not import each other. Holds no state.

use prometheus_client::encoding::EncodeLabelSet;

/// Namespace and script of a series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScriptLabels {
    /// Namespace.
    pub namespace: String,
    /// Script.
    pub script: String,
}
