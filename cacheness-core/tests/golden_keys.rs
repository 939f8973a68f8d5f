//! Golden cache keys.
//!
//! THESE VALUES MUST NEVER CHANGE. A cache key is stored with every entry; if
//! the key of the same parameters changes, every existing cache is silently
//! invalidated (every lookup misses). A failure here means the canonical
//! encoding changed: fix the code, never the expected values.
//!
//! `golden/keys.txt` has one line per case, in the order of [`cases`]:
//! `<32-hex key>\t<description>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cacheness_core::key;
use cacheness_core::key::{CacheKey, FileDigest, Integer, Params, Value};

const GOLDEN: &str = include_str!("golden/keys.txt");

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn cases() -> Vec<(&'static str, Params)> {
    let fixed_file = FileDigest {
        path: PathBuf::from("data/train.csv"),
        blake3: std::array::from_fn(|index| index as u8),
    };
    vec![
        ("empty params", key!()),
        ("a = 1", key!(a = 1)),
        ("none", key!(x = ())),
        ("bool true", key!(x = true)),
        ("bool false", key!(x = false)),
        ("int 0", key!(x = 0)),
        ("int -1", key!(x = -1)),
        ("int i64::MAX", key!(x = i64::MAX)),
        ("int u64::MAX + 1", key!(x = u128::from(u64::MAX) + 1)),
        ("int i128::MIN", key!(x = i128::MIN)),
        ("int u128::MAX", key!(x = u128::MAX)),
        ("float 1.5", key!(x = 1.5)),
        ("float 1.0", key!(x = 1.0)),
        ("float 0.0", key!(x = 0.0)),
        ("float -0.0 (same key as 0.0)", key!(x = -0.0)),
        ("float NaN", key!(x = f64::NAN)),
        (
            "float NaN with payload (same key as NaN)",
            key!(x = f64::from_bits(0xfff0_0000_dead_beef)),
        ),
        ("float inf", key!(x = f64::INFINITY)),
        ("float -inf", key!(x = f64::NEG_INFINITY)),
        ("float f32 0.1 widened", key!(x = 0.1f32)),
        ("str empty", key!(x = "")),
        ("str \"1\"", key!(x = "1")),
        ("str unicode", key!(x = "héllo wörld 🦀\u{0}\n")),
        ("unicode name", key!(名前 = "値")),
        ("bytes empty", key!(x = Value::bytes(Vec::new()))),
        ("bytes 00 01 ff", key!(x = Value::bytes([0x00, 0x01, 0xff]))),
        ("list empty", key!(x = Value::List(Vec::new()))),
        ("list of u8 (not bytes)", key!(x = vec![0u8, 1, 255])),
        (
            "list mixed",
            key!(x = Value::List(vec![1.into(), "a".into(), Value::None, 2.5.into()])),
        ),
        (
            "list nested",
            key!(x = vec![vec![vec![Value::None]], vec![]]),
        ),
        ("map empty", key!(x = Value::Map(BTreeMap::new()))),
        (
            "map nested",
            key!(
                x = map([
                    ("b", Value::List(vec![1.into(), map([("c", true.into())])])),
                    ("a", Value::None),
                    ("ключ", "значение".into()),
                ])
            ),
        ),
        ("file digest 00..1f", key!(input = fixed_file)),
        ("raw identifier r#type", key!(r#type = "tree")),
        (
            "several params",
            key!(
                model = "xgboost",
                version = 2,
                learning_rate = 0.1,
                features = vec!["age", "income"],
                seed = None::<u64>,
                weights = Value::bytes(*b"\x00\x10"),
            ),
        ),
        (
            "params built by insert",
            Params::new()
                .with("", 0)
                .and_then(|params| params.with("a b", Integer::from(-7i8)))
                .and_then(|params| params.with("z", 'z'))
                .unwrap_or_default(),
        ),
    ]
}

#[test]
fn golden_keys_never_change() {
    let cases = cases();
    let lines: Vec<&str> = GOLDEN.lines().collect();
    assert_eq!(
        lines.len(),
        cases.len(),
        "golden/keys.txt has one line per case"
    );

    let mut mismatches = Vec::new();
    for ((description, params), line) in cases.iter().zip(&lines) {
        let (expected_key, expected_description) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("golden line without a tab: {line:?}"));
        assert_eq!(
            *description, expected_description,
            "cases and golden lines are out of order"
        );
        let expected_key: CacheKey = expected_key
            .parse()
            .expect("golden key is 32 hex characters");
        let actual = params.key();
        if actual != expected_key {
            mismatches.push(format!("{actual}\t{description} (golden {expected_key})"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "cache keys changed, which would invalidate every cache:\n{}",
        mismatches.join("\n")
    );
}

fn blake3_key(encoding: &[u8]) -> CacheKey {
    let mut key = [0u8; 16];
    key.copy_from_slice(&blake3::hash(encoding).as_bytes()[..16]);
    CacheKey::from_bytes(key)
}

// The golden file alone would only prove that keys are stable; these spell
// the encoding out byte by byte, so they prove it is the documented one.

#[test]
fn empty_params_encoding_by_hand() {
    let encoding = b"cnk\x01\
        \x00\x00\x00\x00\x00\x00\x00\x00";
    assert_eq!(key!().encode(), encoding);
    assert_eq!(key!().key(), blake3_key(encoding));
}

#[test]
fn single_int_encoding_by_hand() {
    let encoding = b"cnk\x01\
        \x01\x00\x00\x00\x00\x00\x00\x00\
        \x01\x00\x00\x00\x00\x00\x00\x00a\
        \x02\x00\
        \x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    assert_eq!(key!(a = 1).encode(), encoding);
    assert_eq!(key!(a = 1).key(), blake3_key(encoding));
}

#[test]
fn mixed_encoding_by_hand() {
    // s = "é", n = -2, f = NaN (any), z = -0.0, m = {"k": [None, false]},
    // d = bytes [0xff], file = digest of all 0x11.
    let mut params = key!(
        s = "é",
        n = -2,
        f = -f64::NAN,
        z = -0.0,
        m = map([("k", Value::List(vec![Value::None, false.into()]))]),
        d = Value::bytes([0xff]),
        file = FileDigest {
            path: PathBuf::from("ignored.bin"),
            blake3: [0x11; 32]
        },
    );
    let mut encoding: Vec<u8> = Vec::new();
    encoding.extend_from_slice(b"cnk\x01\x07\x00\x00\x00\x00\x00\x00\x00");
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00d\x05\x01\x00\x00\x00\x00\x00\x00\x00\xff",
    );
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00f\x03\x00\x00\x00\x00\x00\x00\xf8\x7f",
    );
    encoding.extend_from_slice(b"\x04\x00\x00\x00\x00\x00\x00\x00file\x08");
    encoding.extend_from_slice(&[0x11; 32]);
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00m\x07\x01\x00\x00\x00\x00\x00\x00\x00",
    );
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00k\x06\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00",
    );
    encoding.extend_from_slice(b"\x01\x00\x00\x00\x00\x00\x00\x00n\x02\x01");
    encoding.extend_from_slice(b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00s\x04\x02\x00\x00\x00\x00\x00\x00\x00\xc3\xa9",
    );
    encoding.extend_from_slice(
        b"\x01\x00\x00\x00\x00\x00\x00\x00z\x03\x00\x00\x00\x00\x00\x00\x00\x00",
    );
    assert_eq!(params.encode(), encoding);
    assert_eq!(params.key(), blake3_key(&encoding));

    // The path is informational: another path, same key.
    params = Params::decode(&encoding).expect("hand-written encoding decodes");
    assert_eq!(params.encode(), encoding);
}
