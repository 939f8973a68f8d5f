//! The binary serde codecs a cache could store values with, side by side with
//! JSON: encode and decode time and size on the W1 record, a vector of a
//! million floats and a MiB of bytes, and which serde features each reads back.
//! `cacheness JsonCodec (checked)` is serde_json behind cacheness's walk that
//! refuses NaN, infinities and unwritable map keys at put; `rmp-serde named`
//! is cacheness's `msgpack` codec.
//! docs/CODECS.md quotes its output. Run with:
//!
//! ```text
//! cargo run --release -p cacheness-bench --example codecs
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use cacheness_bench::stores::Record;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Each codec as an (encode, decode) pair over a closed set of test types.
struct Candidate {
    name: &'static str,
    encode: fn(&Sample) -> Option<Vec<u8>>,
    decode: fn(&Kind, &[u8]) -> Option<Sample>,
}

/// The values measured and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Tagged {
    Model { depth: u32 },
    Baseline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    depth: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flattened {
    name: String,
    #[serde(flatten)]
    inner: Inner,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Before {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct After {
    name: String,
    #[serde(default)]
    added: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Sample {
    Record(Record),
    Floats(Vec<f64>),
    Bytes(serde_bytes::ByteBuf),
    Json(serde_json::Value),
    Tagged(Vec<Tagged>),
    Untagged(Vec<Untagged>),
    Flattened(Flattened),
    IntKeys(HashMap<u64, String>),
    Big(Vec<u128>),
    Nan(Vec<f64>),
    Before(Before),
    After(After),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Record,
    Floats,
    Bytes,
    Json,
    Tagged,
    Untagged,
    Flattened,
    IntKeys,
    Big,
    Nan,
    /// `Before` written, `After` read.
    Evolved,
}

macro_rules! codec {
    ($name:expr, $to:expr, $from:path) => {
        Candidate {
            name: $name,
            encode: |sample| match sample {
                Sample::Record(v) => $to(v),
                Sample::Floats(v) => $to(v),
                Sample::Bytes(v) => $to(v),
                Sample::Json(v) => $to(v),
                Sample::Tagged(v) => $to(v),
                Sample::Untagged(v) => $to(v),
                Sample::Flattened(v) => $to(v),
                Sample::IntKeys(v) => $to(v),
                Sample::Big(v) => $to(v),
                Sample::Nan(v) => $to(v),
                Sample::Before(v) => $to(v),
                Sample::After(v) => $to(v),
            },
            decode: |kind, bytes| {
                fn from<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
                    $from(bytes).ok()
                }
                Some(match kind {
                    Kind::Record => Sample::Record(from(bytes)?),
                    Kind::Floats => Sample::Floats(from(bytes)?),
                    Kind::Bytes => Sample::Bytes(from(bytes)?),
                    Kind::Json => Sample::Json(from(bytes)?),
                    Kind::Tagged => Sample::Tagged(from(bytes)?),
                    Kind::Untagged => Sample::Untagged(from(bytes)?),
                    Kind::Flattened => Sample::Flattened(from(bytes)?),
                    Kind::IntKeys => Sample::IntKeys(from(bytes)?),
                    Kind::Big => Sample::Big(from(bytes)?),
                    Kind::Nan => Sample::Nan(from(bytes)?),
                    Kind::Evolved => Sample::After(from(bytes)?),
                })
            },
        }
    };
}

fn to_json<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value).ok()
}
fn to_checked_json<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    cacheness_core::Codec::encode(&cacheness_core::JsonCodec, value).ok()
}
fn to_msgpack<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    rmp_serde::to_vec(value).ok()
}
fn to_msgpack_named<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    rmp_serde::to_vec_named(value).ok()
}
fn to_postcard<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    postcard::to_stdvec(value).ok()
}
fn to_bitcode<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    bitcode::serialize(value).ok()
}

fn candidates() -> Vec<Candidate> {
    vec![
        codec!("serde_json", to_json, serde_json::from_slice),
        codec!(
            "cacheness JsonCodec (checked)",
            to_checked_json,
            serde_json::from_slice
        ),
        codec!("rmp-serde", to_msgpack, rmp_serde::from_slice),
        codec!("rmp-serde named", to_msgpack_named, rmp_serde::from_slice),
        codec!("postcard", to_postcard, postcard::from_bytes),
        codec!("bitcode", to_bitcode, bitcode::deserialize),
    ]
}

/// Nanoseconds per call of `run`, over enough calls to take ~0.2 s.
fn time(mut run: impl FnMut()) -> f64 {
    let mut calls = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            run();
        }
        let elapsed = start.elapsed();
        if elapsed.as_millis() >= 200 {
            return elapsed.as_nanos() as f64 / calls as f64;
        }
        calls *= 4;
    }
}

fn human_ns(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.1} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.1} µs", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let speed: [(&str, Sample, Kind); 3] = [
        ("W1 record", Sample::Record(Record::new(42)), Kind::Record),
        (
            "1M f64",
            Sample::Floats((0..1_000_000).map(|i| i as f64 * 0.37).collect()),
            Kind::Floats,
        ),
        (
            "1 MiB bytes",
            Sample::Bytes(serde_bytes::ByteBuf::from(
                (0..1u32 << 20)
                    .map(|i| (i * 31 % 251) as u8)
                    .collect::<Vec<u8>>(),
            )),
            Kind::Bytes,
        ),
    ];
    println!("| codec | value | size | encode | decode |");
    println!("|---|---|---:|---:|---:|");
    for candidate in candidates() {
        for (label, sample, kind) in &speed {
            let bytes = (candidate.encode)(sample).expect("encodes");
            let exact = (candidate.decode)(kind, &bytes).as_ref() == Some(sample);
            let encode = time(|| {
                black_box((candidate.encode)(black_box(sample)));
            });
            let decode = time(|| {
                black_box((candidate.decode)(kind, black_box(&bytes)));
            });
            println!(
                "| {} | {label} | {} B | {} | {} |{}",
                candidate.name,
                bytes.len(),
                human_ns(encode),
                human_ns(decode),
                if exact {
                    ""
                } else {
                    " **reads back different**"
                }
            );
        }
    }

    let checks: Vec<(&str, Sample, Kind, Sample)> = {
        let json = serde_json::json!({"model": "xgboost", "scores": [0.5, 1.5], "ok": true});
        let tagged = vec![Tagged::Model { depth: 3 }, Tagged::Baseline];
        let untagged = vec![Untagged::Number(3), Untagged::Text("x".into())];
        let flattened = Flattened {
            name: "a".into(),
            inner: Inner { depth: 2 },
        };
        let keys: HashMap<u64, String> = [(1, "one".to_owned()), (2, "two".into())].into();
        let big = vec![u128::from(u64::MAX) + 1, 7];
        let before = Before { name: "v1".into() };
        vec![
            (
                "serde_json::Value",
                Sample::Json(json.clone()),
                Kind::Json,
                Sample::Json(json),
            ),
            (
                "#[serde(tag)] enum",
                Sample::Tagged(tagged.clone()),
                Kind::Tagged,
                Sample::Tagged(tagged),
            ),
            (
                "#[serde(untagged)] enum",
                Sample::Untagged(untagged.clone()),
                Kind::Untagged,
                Sample::Untagged(untagged),
            ),
            (
                "#[serde(flatten)]",
                Sample::Flattened(flattened.clone()),
                Kind::Flattened,
                Sample::Flattened(flattened),
            ),
            (
                "HashMap<u64, _>",
                Sample::IntKeys(keys.clone()),
                Kind::IntKeys,
                Sample::IntKeys(keys),
            ),
            (
                "u128 > u64::MAX",
                Sample::Big(big.clone()),
                Kind::Big,
                Sample::Big(big),
            ),
            (
                "f64 NaN",
                Sample::Nan(vec![f64::NAN]),
                Kind::Nan,
                Sample::Nan(vec![f64::NAN]),
            ),
            (
                "field added with #[serde(default)]",
                Sample::Before(before),
                Kind::Evolved,
                Sample::After(After {
                    name: "v1".into(),
                    added: 0,
                }),
            ),
        ]
    };
    println!();
    println!(
        "| reads back | {} |",
        candidates()
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(candidates().len()));
    for (label, written, kind, expected) in &checks {
        let cells: Vec<&str> = candidates()
            .iter()
            .map(|candidate| {
                let encoded = std::panic::catch_unwind(|| (candidate.encode)(written));
                let Ok(Some(bytes)) = encoded else {
                    return match encoded {
                        Err(_) => "**put panics**",
                        _ => "refused at put",
                    };
                };
                match std::panic::catch_unwind(|| (candidate.decode)(kind, &bytes)) {
                    Err(_) => "**put ok, get panics**",
                    Ok(None) => "**put ok, get fails**",
                    Ok(Some(Sample::Nan(read))) if read.first().is_some_and(|x| x.is_nan()) => {
                        "yes"
                    }
                    Ok(Some(read)) if &read == expected => "yes",
                    Ok(Some(_)) => "**reads back different**",
                }
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}
