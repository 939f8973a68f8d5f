//! proptest strategies for [`Value`] and [`Params`], shared with the
//! conformance suite (feature `conformance`).

use std::path::PathBuf;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::{FileDigest, Integer, Params, Value};

/// A short name or map key: mostly identifiers, sometimes any Unicode
/// (including the empty string) to exercise escaping and byte ordering.
pub fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_][a-z0-9_]{0,8}",
        1 => any::<String>().prop_map(|name| name.chars().take(12).collect()),
    ]
}

/// Any integer, biased towards the interesting edges.
pub fn arb_integer() -> impl Strategy<Value = Integer> {
    prop_oneof![
        any::<i64>().prop_map(Integer::from),
        any::<i128>().prop_map(Integer::from),
        any::<u128>().prop_map(Integer::from),
        prop_oneof![
            Just(i128::MIN),
            Just(i128::MAX),
            Just(-1i128),
            Just(0i128),
            Just(i128::from(i64::MIN) - 1),
            Just(i128::from(u64::MAX) + 1),
        ]
        .prop_map(Integer::from),
        Just(Integer::from(u128::MAX)),
    ]
}

/// Any float, including NaNs with arbitrary payloads, infinities and `-0.0`.
pub fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        prop_oneof![
            Just(f64::NAN),
            Just(-f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
        ],
    ]
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        arb_integer().prop_map(Value::Int),
        arb_float().prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        (any::<[u8; 32]>(), "[a-z/]{0,12}").prop_map(|(blake3, path)| Value::File(FileDigest {
            path: PathBuf::from(path),
            blake3,
        })),
    ]
}

/// Any value, with lists and maps nested a few levels deep (shallow enough to
/// pass serde_json's recursion limit).
pub fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::List),
            btree_map(arb_name(), inner, 0..6).prop_map(Value::Map),
        ]
    })
}

/// Any parameters (up to 8).
pub fn arb_params() -> impl Strategy<Value = Params> {
    btree_map(arb_name(), arb_value(), 0..8).prop_map(Params::from_sorted)
}
