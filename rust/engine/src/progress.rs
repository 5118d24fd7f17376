//! How far a long operator command has got (`verify` over a large prefix, `uploads` with many
//! recorded uploads). The engine reports; the CLI draws a bar on a terminal.

/// Receives progress from a long operation. Called from the runtime's tasks, hence `Sync`.
pub trait Progress: Send + Sync {
    /// A new phase begins (`what` names the unit counted, e.g. "objects verified") with `total`
    /// units of work.
    fn phase(&self, _what: &str, _total: u64) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
}
