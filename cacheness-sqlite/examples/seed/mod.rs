//! The seed workload's value, shared by the examples that time it.

use serde::{Deserialize, Serialize};

/// A ~200-byte serde value: an id, a short name and 20 integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub values: Vec<u64>,
}

/// The value stored under `idx = index`.
pub fn record(index: u64) -> Record {
    Record {
        id: index,
        name: format!("item-{index}"),
        values: (0..20)
            .map(|j| 1_000_000 + (index * 7_919 + j * 104_729) % 9_000_000)
            .collect(),
    }
}
