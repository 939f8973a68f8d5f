//! The Python original's published figures: a static reference, never
//! measured here, always shown with its source.

/// Where the per-backend profiles come from.
pub const GUIDE_SOURCE: &str = "the Python original's user guide (`shared/seed/BACKEND_SELECTION.md`, \"Performance Profile\"; Python, its authors' machine)";

/// Where the N = 1 000 figures measured on this machine come from.
pub const TARGETS_SOURCE: &str =
    "`shared/BENCHMARK.md`, \"Targets\" (Python 3.12, this machine, N = 1 000)";

/// One backend's published profile: (N, PUT ops/s, GET ops/s, LIST ms).
#[derive(Debug, Clone, Copy)]
pub struct SeedProfile {
    /// The Python backend's name.
    pub backend: &'static str,
    /// (N, PUT ops/s, GET ops/s, LIST ms).
    pub points: &'static [(u64, f64, f64, f64)],
}

/// The guide's profiles, N = 50, 200, 500, 1 000.
pub const GUIDE: &[SeedProfile] = &[
    SeedProfile {
        backend: "memory",
        points: &[
            (50, 6011.0, 19594.0, 0.1),
            (200, 6547.0, 21732.0, 0.3),
            (500, 6693.0, 14698.0, 0.6),
            (1000, 6228.0, 14794.0, 1.2),
        ],
    },
    SeedProfile {
        backend: "json",
        points: &[
            (50, 4678.0, 5491.0, 0.2),
            (200, 4403.0, 3666.0, 0.6),
            (500, 3646.0, 2190.0, 1.3),
            (1000, 2720.0, 1142.0, 2.7),
        ],
    },
    SeedProfile {
        backend: "sqlite",
        points: &[
            (50, 1753.0, 1810.0, 5.5),
            (200, 1171.0, 1895.0, 21.7),
            (500, 578.0, 1626.0, 50.3),
            (1000, 361.0, 1659.0, 94.3),
        ],
    },
];

/// Measured on this machine per BENCHMARK.md: (name, PUT ops/s, GET ops/s,
/// LIST ms) at N = 1 000.
pub const TARGETS: &[(&str, f64, f64, f64)] = &[
    ("seed sqlite", 180.0, 1100.0, 150.0),
    ("diskcache", 15000.0, 75000.0, 1.0),
];

/// The Python backend a cacheness backend is compared with: itself, or the
/// one under its layer (`memlayer+json` → `json`, `sqlite-memory` → `sqlite`).
pub fn counterpart(backend: &str) -> Option<&'static SeedProfile> {
    let base = backend.strip_prefix("memlayer+").unwrap_or(backend);
    let base = if base == "sqlite-memory" {
        "sqlite"
    } else {
        base
    };
    GUIDE.iter().find(|profile| profile.backend == base)
}

/// The guide's (PUT, GET, LIST) for `backend`'s counterpart at `n`, if listed.
pub fn at(backend: &str, n: u64) -> Option<(f64, f64, f64)> {
    counterpart(backend)?
        .points
        .iter()
        .find(|point| point.0 == n)
        .map(|&(_, put, get, list)| (put, get, list))
}
