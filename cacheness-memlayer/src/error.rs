//! The errors of the memory layer.

/// What can go wrong in the memory layer itself (the backend's errors pass
/// through unchanged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemLayerError {
    /// A configuration value is invalid.
    #[error("invalid memory layer configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The field, e.g. "capacity".
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

impl From<MemLayerError> for cacheness_core::Error {
    fn from(error: MemLayerError) -> Self {
        match error {
            MemLayerError::InvalidConfig { field, reason } => cacheness_core::Error::Config {
                // The facade's config nests these fields under `memory_layer`.
                field: match field {
                    "capacity" => "memory_layer.capacity",
                    "ttl" => "memory_layer.ttl",
                    "check_interval" => "memory_layer.check_interval",
                    other => other,
                },
                reason,
            },
        }
    }
}
