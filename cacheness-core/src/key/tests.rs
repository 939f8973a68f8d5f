use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use proptest::prelude::*;
use serde::Serialize;

use super::arb::{arb_params, arb_value};
use super::*;
use crate::key;

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

fn json_round_trip(params: &Params) -> Params {
    let json = serde_json::to_string(params).expect("params serialize to JSON");
    serde_json::from_str(&json)
        .unwrap_or_else(|error| panic!("{json} does not parse back: {error}"))
}

#[test]
fn params_from_json_in_any_order_sort_by_name_and_the_last_duplicate_wins() {
    let shuffled: Params = serde_json::from_str(r#"{"b": {"str": "two"}, "a": {"int": "1"}}"#)
        .expect("params in any order parse");
    assert_eq!(shuffled, key!(a = 1, b = "two"));
    assert_eq!(shuffled.key(), key!(b = "two", a = 1).key());
    let repeated: Params =
        serde_json::from_str(r#"{"a": {"int": "1"}, "b": {"bool": true}, "a": {"int": "2"}}"#)
            .expect("a repeated name parses, like a map");
    assert_eq!(repeated, key!(a = 2, b = true));
    assert!(serde_json::from_str::<Params>("[1, 2]").is_err());
    assert_eq!(
        serde_json::to_string(&key!(b = true, a = ())).unwrap(),
        r#"{"a":"none","b":{"bool":true}}"#
    );
}

#[test]
fn params_debug_like_a_map() {
    assert_eq!(
        format!("{:?}", key!(b = true, a = ())),
        "Params({\"a\": None, \"b\": Bool(true)})"
    );
}

#[test]
fn large_params_hash_like_small_ones() {
    // Past the on-stack buffer the key is hashed from a heap encoding.
    let long = "x".repeat(1_000);
    let params = key!(a = long.as_str(), b = 2);
    let digest = blake3::hash(&params.encode());
    assert_eq!(params.key().as_bytes()[..], digest.as_bytes()[..16]);
    let short = key!(a = "x", b = 2);
    let digest = blake3::hash(&short.encode());
    assert_eq!(short.key().as_bytes()[..], digest.as_bytes()[..16]);
}

#[test]
fn insertion_order_does_not_matter() {
    let forwards = key!(a = 1, b = "two", c = 3.0);
    let backwards = key!(c = 3.0, b = "two", a = 1);
    assert_eq!(forwards.encode(), backwards.encode());
    assert_eq!(forwards.key(), backwards.key());

    let mut inserted = Params::new();
    inserted.insert("b", "two").unwrap();
    inserted.insert("c", 3.0).unwrap();
    inserted.insert("a", 1).unwrap();
    assert_eq!(inserted.key(), forwards.key());
}

#[test]
fn types_are_part_of_the_key() {
    let keys = [
        key!(x = "1").key(),
        key!(x = 1).key(),
        key!(x = 1.0).key(),
        key!(x = true).key(),
        key!(x = Value::bytes(*b"1")).key(),
        key!(x = vec![1]).key(),
        key!(x = ()).key(),
    ];
    for (index, left) in keys.iter().enumerate() {
        for right in &keys[index + 1..] {
            assert_ne!(left, right);
        }
    }
}

#[test]
fn integer_types_do_not_matter() {
    let expected = key!(n = 1i64).key();
    assert_eq!(key!(n = 1u8).key(), expected);
    assert_eq!(key!(n = 1u128).key(), expected);
    assert_eq!(key!(n = 1isize).key(), expected);
    assert_eq!(key!(n = Integer::from(1u16)).key(), expected);
    assert_eq!(key!(n = -5i8).key(), key!(n = -5i128).key());
}

#[test]
fn extreme_integers_are_exact() {
    let min = Integer::from(i128::MIN);
    let max = Integer::from(u128::MAX);
    assert_eq!(min.to_i128(), Some(i128::MIN));
    assert_eq!(min.to_u128(), None);
    assert_eq!(max.to_u128(), Some(u128::MAX));
    assert_eq!(max.to_i128(), None);
    assert_eq!(min.to_string(), i128::MIN.to_string());
    assert_eq!(max.to_string(), u128::MAX.to_string());
    assert!(min < Integer::from(-1) && Integer::from(-1) < Integer::from(0u8));
    assert!(Integer::from(i128::MAX) < max);
    assert_ne!(key!(n = i128::MIN).key(), key!(n = i128::MAX).key());

    let encoded = key!(n = i128::MIN).encode();
    let mut magnitude = [0u8; 16];
    magnitude[15] = 0x80;
    assert_eq!(encoded[encoded.len() - 17], 1, "sign byte");
    assert_eq!(encoded[encoded.len() - 16..], magnitude);

    for params in [key!(n = i128::MIN), key!(n = u128::MAX)] {
        assert_eq!(Params::decode(&params.encode()).unwrap(), params);
        assert_eq!(json_round_trip(&params), params);
    }
}

#[test]
fn every_nan_is_one_key() {
    let expected = key!(x = f64::NAN).key();
    let nans = [
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(0xfff8_dead_beef_0000),
        f64::from(f32::NAN),
        f64::INFINITY - f64::INFINITY,
    ];
    for nan in nans {
        assert!(nan.is_nan());
        assert_eq!(key!(x = nan).key(), expected);
    }
    assert_ne!(key!(x = f64::INFINITY).key(), expected);
}

#[test]
fn negative_zero_is_zero() {
    assert_eq!(key!(x = -0.0).key(), key!(x = 0.0).key());
    assert_eq!(key!(x = -0.0f32).key(), key!(x = 0.0).key());
    assert_ne!(key!(x = 0.0).key(), key!(x = 0).key());
}

#[test]
fn nested_containers() {
    let nested = key!(
        config = map([
            ("layers", Value::from(vec![64, 32])),
            ("activation", "relu".into()),
            ("extra", map([("dropout", 0.1.into())])),
        ]),
        tags = vec![vec!["a"], vec![], vec!["b", "c"]],
    );
    let reordered = key!(
        tags = vec![vec!["a"], vec![], vec!["b", "c"]],
        config = map([
            ("extra", map([("dropout", 0.1.into())])),
            ("activation", "relu".into()),
            ("layers", Value::from(vec![64, 32])),
        ]),
    );
    assert_eq!(nested.key(), reordered.key());
    let list_order_matters = key!(
        config = map([
            ("layers", Value::from(vec![32, 64])),
            ("activation", "relu".into()),
            ("extra", map([("dropout", 0.1.into())])),
        ]),
        tags = vec![vec!["a"], vec![], vec!["b", "c"]],
    );
    assert_ne!(nested.key(), list_order_matters.key());
    // A list of lists is not the flattened list.
    assert_ne!(key!(x = vec![vec![1, 2]]).key(), key!(x = vec![1, 2]).key());
    assert_eq!(Params::decode(&nested.encode()).unwrap(), nested);
}

#[test]
fn maps_from_std_collections() {
    let btree: BTreeMap<String, i32> = [("a".to_owned(), 1), ("b".to_owned(), 2)].into();
    let hash: HashMap<String, i32> = [("b".to_owned(), 2), ("a".to_owned(), 1)].into();
    assert_eq!(Value::from(btree.clone()), Value::from(hash));
    assert_eq!(Value::from(btree), map([("a", 1.into()), ("b", 2.into())]));
}

#[test]
fn value_conversions() {
    assert_eq!(Value::from('x'), Value::Str("x".to_owned()));
    assert_eq!(Value::from(&"x".to_owned()), Value::Str("x".to_owned()));
    assert_eq!(Value::from(()), Value::None);
    assert_eq!(Value::from(None::<i32>), Value::None);
    assert_eq!(Value::from(Some(Some(3))), Value::Int(Integer::from(3)));
    assert_eq!(Value::from(1.5f32), Value::Float(1.5));
    assert_eq!(
        Value::from(vec![1u8]),
        Value::List(vec![Value::Int(Integer::from(1))])
    );
    assert_eq!(Value::bytes(vec![1u8]), Value::Bytes(vec![1]));
    assert_eq!(Value::bytes(&b"ab"[..]), Value::Bytes(b"ab".to_vec()));
}

#[test]
fn cache_key_text_round_trip() {
    let key = key!(model = "xgboost").key();
    let text = key.to_string();
    assert_eq!(text.len(), 32);
    assert!(
        text.bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_eq!(key.to_hex(), text);
    assert_eq!(text.parse::<CacheKey>().unwrap(), key);
    assert_eq!(text.to_uppercase().parse::<CacheKey>().unwrap(), key);
    assert_eq!(format!("{key:?}"), format!("CacheKey({text})"));

    let bytes: [u8; 16] = std::array::from_fn(|index| index as u8 * 17);
    let from_bytes = CacheKey::from_bytes(bytes);
    assert_eq!(from_bytes.as_bytes(), &bytes);
    assert_eq!(from_bytes.to_string(), "00112233445566778899aabbccddeeff");

    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<CacheKey>(&json).unwrap(), key);
    assert!(serde_json::from_str::<CacheKey>("\"xyz\"").is_err());
}

#[test]
fn cache_key_parse_errors() {
    let valid = "00112233445566778899aabbccddeeff";
    let invalid = [
        "",
        &valid[..31],
        &valid[..30],
        "00112233445566778899aabbccddeeff0",
        "00112233445566778899aabbccddeeff00",
        "00112233445566778899aabbccddeefg",
        "0x112233445566778899aabbccddeeff",
        " 0112233445566778899aabbccddeeff",
        "00112233445566778899aabbccddeeé",
        "+0112233445566778899aabbccddeeff",
    ];
    for input in invalid {
        match input.parse::<CacheKey>() {
            Err(KeyError::InvalidKey { input: reported }) => assert_eq!(reported, input),
            other => panic!("{input:?} parsed as {other:?}"),
        }
    }
    assert_eq!(
        "abc".parse::<CacheKey>().unwrap_err().to_string(),
        "invalid cache key `abc`: expected 32 hex characters"
    );
}

#[test]
fn duplicate_insert_leaves_params_unchanged() {
    let mut params = key!(a = 1, b = 2);
    let before = params.clone();
    let error = params.insert("a", "other").unwrap_err();
    assert!(matches!(&error, KeyError::DuplicateName { name } if name == "a"));
    assert_eq!(error.to_string(), "duplicate parameter name `a`");
    assert_eq!(params, before);

    let built = Params::new()
        .with("x", 1)
        .and_then(|params| params.with("x", 2));
    assert!(matches!(built, Err(KeyError::DuplicateName { .. })));
    let built = Params::new()
        .with("x", 1)
        .and_then(|params| params.with("y", 2))
        .unwrap();
    assert_eq!(built, key!(x = 1, y = 2));
}

#[test]
fn accessors() {
    let params = key!(b = 2, a = "one");
    assert_eq!(params.len(), 2);
    assert!(!params.is_empty());
    assert!(key!().is_empty());
    assert_eq!(key!(), Params::new());
    assert_eq!(params.get("a"), Some(&Value::from("one")));
    assert_eq!(params.get("c"), None);
    let names: Vec<&str> = params.iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn raw_identifier_names() {
    let params = key!(r#type = "tree", r#match = 1);
    assert_eq!(params.get("type"), Some(&Value::from("tree")));
    assert_eq!(params.get("r#type"), None);
    assert_eq!(
        params.key(),
        Params::new()
            .with("type", "tree")
            .unwrap()
            .with("match", 1)
            .unwrap()
            .key()
    );
}

#[test]
fn unicode_identifier_names() {
    let params = key!(größe = 3, 名前 = "値");
    assert_eq!(params.get("größe"), Some(&Value::from(3)));
    assert_eq!(params.get("名前"), Some(&Value::from("値")));
}

#[test]
fn macro_values_are_expressions() {
    let params = "shadowing";
    let version = 2;
    let built = key!(name = params, version = version + 1, list = vec![1, 2],);
    assert_eq!(built.get("name"), Some(&Value::from("shadowing")));
    assert_eq!(built.get("version"), Some(&Value::from(3)));
}

#[test]
fn display_is_human_readable() {
    let params = key!(
        model = "xg\"boost\n",
        version = 2,
        lr = 0.5,
        whole = 1.0,
        on = true,
        missing = None::<i32>,
        raw = Value::bytes(*b"a\x00"),
        layers = vec![1, 2],
        nested = map([("k", "v".into())]),
    );
    assert_eq!(
        params.to_string(),
        r#"layers=[1, 2], lr=0.5, missing=none, model="xg\"boost\n", nested={"k": "v"}, on=true, raw=b"a\x00", version=2, whole=1.0"#
    );
    let odd_names = Params::new()
        .with("a b", 1)
        .unwrap()
        .with("", f64::NAN)
        .unwrap();
    assert_eq!(odd_names.to_string(), r#"""=NaN, "a b"=1"#);
    assert_eq!(key!().to_string(), "");
    let file = key!(
        data = FileDigest {
            path: PathBuf::from("in.csv"),
            blake3: [0xab; 32]
        }
    );
    assert_eq!(
        file.to_string(),
        format!("data=file(\"in.csv\", blake3={})", "ab".repeat(32))
    );
}

#[derive(Serialize)]
struct Inner {
    depth: u8,
    ratio: f32,
}

#[derive(Serialize)]
#[allow(dead_code)]
enum Mode {
    Fast,
    Careful(u32),
    Custom { level: i8 },
    Pair(bool, char),
}

#[derive(Serialize)]
struct Job<'a> {
    model: &'a str,
    version: u32,
    seed: Option<u64>,
    missing: Option<i32>,
    inner: Inner,
    layers: Vec<u16>,
    mode: Mode,
    other_mode: Mode,
    struct_mode: Mode,
    tuple_mode: Mode,
    pair: (i32, String),
    #[serde(with = "serde_bytes_like")]
    blob: Vec<u8>,
    #[serde(skip)]
    ignored: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    absent: Option<u8>,
    unit: (),
    letter: char,
    r#type: &'a str,
}

/// Stands in for the serde_bytes crate: serialize through `serialize_bytes`.
mod serde_bytes_like {
    pub(super) fn serialize<S: serde::Serializer>(
        bytes: &[u8],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }
}

#[test]
fn from_serialize_matches_key_macro() {
    let job = Job {
        model: "xgboost",
        version: 2,
        seed: Some(42),
        missing: None,
        inner: Inner {
            depth: 6,
            ratio: 0.5,
        },
        layers: vec![64, 32],
        mode: Mode::Fast,
        other_mode: Mode::Careful(3),
        struct_mode: Mode::Custom { level: -1 },
        tuple_mode: Mode::Pair(true, 'x'),
        pair: (7, "seven".to_owned()),
        blob: vec![0, 255],
        ignored: 9,
        absent: None,
        unit: (),
        letter: 'q',
        r#type: "tree",
    };
    assert_eq!(job.ignored, 9);
    let expected = key!(
        model = "xgboost",
        version = 2u32,
        seed = 42,
        missing = None::<i32>,
        inner = map([("depth", 6.into()), ("ratio", 0.5.into())]),
        layers = vec![64, 32],
        mode = "Fast",
        other_mode = map([("Careful", 3.into())]),
        struct_mode = map([("Custom", map([("level", (-1).into())]))]),
        tuple_mode = map([("Pair", Value::List(vec![true.into(), 'x'.into()]))]),
        pair = Value::List(vec![7.into(), "seven".into()]),
        blob = Value::bytes([0, 255]),
        unit = (),
        letter = "q",
        r#type = "tree",
    );
    let params = Params::from_serialize(&job).unwrap();
    assert_eq!(params, expected);
    assert_eq!(params.key(), expected.key());
}

#[test]
fn from_serialize_simple_struct() {
    #[derive(Serialize)]
    struct Key {
        model: &'static str,
        version: u32,
    }
    let params = Params::from_serialize(&Key {
        model: "xgboost",
        version: 2,
    })
    .unwrap();
    assert_eq!(params.key(), key!(model = "xgboost", version = 2u32).key());
}

#[test]
fn from_serialize_accepts_string_maps_and_wrappers() {
    let hash: HashMap<String, i32> = [("b".to_owned(), 2), ("a".to_owned(), 1)].into();
    assert_eq!(Params::from_serialize(&hash).unwrap(), key!(a = 1, b = 2));

    #[derive(Serialize)]
    struct Wrapper(BTreeMap<char, bool>);
    let wrapped = Wrapper([('x', true)].into());
    assert_eq!(Params::from_serialize(&wrapped).unwrap(), key!(x = true));

    #[derive(Serialize)]
    struct Empty {}
    assert_eq!(Params::from_serialize(&Empty {}).unwrap(), key!());
}

#[test]
fn from_serialize_rejects_what_cannot_be_params() {
    fn unsupported<T: Serialize + ?Sized>(value: &T) -> String {
        match Params::from_serialize(value) {
            Err(KeyError::Unsupported { what }) => what,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    assert!(unsupported(&5).contains("integer"));
    assert!(unsupported("text").contains("string"));
    assert!(unsupported(&vec![1, 2]).contains("sequence"));
    assert!(unsupported(&(1, 2)).contains("tuple"));
    assert!(unsupported(&None::<u8>).contains("None"));
    assert!(unsupported(&Mode::Fast).contains("Mode::Fast"));
    let int_keys: BTreeMap<i32, i32> = [(1, 1)].into();
    assert!(unsupported(&int_keys).contains("map key of type integer"));

    #[derive(Serialize)]
    struct Nested {
        inner: BTreeMap<(u8, u8), u8>,
    }
    let nested = Nested {
        inner: [((1, 2), 3)].into(),
    };
    assert!(unsupported(&nested).contains("map key of type tuple"));

    assert_eq!(
        Params::from_serialize(&5).unwrap_err().to_string(),
        "cannot build cache parameters from a top-level integer (expected a struct or a map with string keys)"
    );
}

#[test]
fn from_serialize_rejects_duplicate_names() {
    #[derive(Serialize)]
    struct Extra {
        version: u32,
    }
    #[derive(Serialize)]
    struct Flattened {
        version: u32,
        #[serde(flatten)]
        extra: Extra,
    }
    let result = Params::from_serialize(&Flattened {
        version: 1,
        extra: Extra { version: 2 },
    });
    assert!(matches!(result, Err(KeyError::DuplicateName { name }) if name == "version"));
}

#[test]
fn from_serialize_reports_custom_errors() {
    struct Failing;
    impl Serialize for Failing {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot serialize this"))
        }
    }
    #[derive(Serialize)]
    struct Holder {
        field: Failing,
    }
    let error = Params::from_serialize(&Holder { field: Failing }).unwrap_err();
    assert!(matches!(&error, KeyError::Serialize(message) if message == "cannot serialize this"));
    assert_eq!(error.to_string(), "cannot serialize this");
}

#[test]
fn from_serialize_survives_lying_length_hints() {
    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let seq = serializer.serialize_seq(Some(usize::MAX))?;
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct Holder {
        field: Liar,
    }
    let params = Params::from_serialize(&Holder { field: Liar }).unwrap();
    assert_eq!(params, key!(field = Value::List(vec![])));
}

#[test]
fn file_values_hash_content() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.bin");
    let second = dir.path().join("second.bin");
    let different = dir.path().join("different.bin");
    // Bigger than any single read buffer, so streaming is exercised.
    let content: Vec<u8> = (0..200_000u32).map(|index| (index % 251) as u8).collect();
    std::fs::write(&first, &content).unwrap();
    std::fs::write(&second, &content).unwrap();
    let mut changed = content.clone();
    changed[199_999] ^= 1;
    std::fs::write(&different, &changed).unwrap();

    let first_value = Value::file(&first).unwrap();
    match &first_value {
        Value::File(digest) => {
            assert_eq!(digest.path, first);
            assert_eq!(digest.blake3, *blake3::hash(&content).as_bytes());
        }
        other => panic!("expected a file value, got {other:?}"),
    }
    let first_key = key!(input = first_value).key();
    assert_eq!(first_key, key!(input = Value::file(&second).unwrap()).key());
    assert_ne!(
        first_key,
        key!(input = Value::file(&different).unwrap()).key()
    );
    assert!(Value::file(dir.path().join("missing")).is_err());
}

#[test]
fn value_json_forms() {
    let cases = [
        (Value::None, r#""none""#),
        (Value::Bool(true), r#"{"bool":true}"#),
        (Value::from(5), r#"{"int":5}"#),
        (Value::from(-5), r#"{"int":-5}"#),
        (Value::from(u64::MAX), r#"{"int":18446744073709551615}"#),
        (
            Value::from(u128::MAX),
            r#"{"int":"340282366920938463463374607431768211455"}"#,
        ),
        (
            Value::from(i128::MIN),
            r#"{"int":"-170141183460469231731687303715884105728"}"#,
        ),
        (Value::from(1.5), r#"{"float":1.5}"#),
        (Value::from(f64::NAN), r#"{"float":"NaN"}"#),
        (Value::from(f64::INFINITY), r#"{"float":"inf"}"#),
        (Value::from(f64::NEG_INFINITY), r#"{"float":"-inf"}"#),
        (Value::from("x"), r#"{"str":"x"}"#),
        (Value::bytes(*b"hi!"), r#"{"bytes":"aGkh"}"#),
        (Value::from(vec![1, 2]), r#"{"list":[{"int":1},{"int":2}]}"#),
        (map([("k", Value::None)]), r#"{"map":{"k":"none"}}"#),
        (
            Value::File(FileDigest {
                path: PathBuf::from("a.txt"),
                blake3: [0x0f; 32],
            }),
            r#"{"file":{"path":"a.txt","blake3":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"}}"#,
        ),
    ];
    for (value, json) in cases {
        assert_eq!(serde_json::to_string(&value).unwrap(), json);
        let back: Value = serde_json::from_str(json).unwrap();
        assert_eq!(key!(v = back).encode(), key!(v = value).encode(), "{json}");
    }
    let params = key!(b = 1, a = "x");
    assert_eq!(
        serde_json::to_string(&params).unwrap(),
        r#"{"a":{"str":"x"},"b":{"int":1}}"#
    );
}

#[test]
fn value_json_accepts_alternatives() {
    let from = |json: &str| serde_json::from_str::<Value>(json).unwrap();
    assert_eq!(from(r#"{"int":"12"}"#), Value::from(12));
    assert_eq!(from(r#"{"int":"-0"}"#), Value::from(0));
    assert_eq!(from(r#"{"float":2}"#), Value::from(2.0));
    assert_eq!(from(r#"{"float":"0.1"}"#), Value::from(0.1));
    assert_eq!(from(r#"{"none":null}"#), Value::None);
    for bad in [
        r#"{"int":1.5}"#,
        r#"{"int":"+1"}"#,
        r#"{"int":"1e3"}"#,
        r#"{"int":"340282366920938463463374607431768211456"}"#,
        r#"{"float":"nan"}"#,
        r#"{"float":"1e999"}"#,
        r#"{"bytes":"***"}"#,
        r#"{"file":{"path":"a","blake3":"00"}}"#,
        r#"{"text":"x"}"#,
    ] {
        assert!(
            serde_json::from_str::<Value>(bad).is_err(),
            "{bad} was accepted"
        );
    }
}

#[test]
fn floats_json_round_trip_exactly() {
    // serde_json's default parser reads these back one ulp off when they are
    // written as plain numbers.
    let awkward = [
        1.071_566_039_146_582_6e-75,
        -1.819_967_304_027_17e-179,
        -1.603_964_615_428_183e143,
        f64::MIN_POSITIVE,
        f64::MAX,
        5e-324,
        0.1,
        -0.0,
    ];
    for float in awkward {
        let json = serde_json::to_string(&Value::Float(float)).unwrap();
        match serde_json::from_str::<Value>(&json).unwrap() {
            Value::Float(back) => assert_eq!(back.to_bits(), float.to_bits(), "{json}"),
            other => panic!("{json} came back as {other:?}"),
        }
    }
}

#[test]
fn to_key_impls() {
    let params = key!(a = 1);
    let key = params.key();
    assert_eq!(params.to_key(), key);
    assert_eq!(ToKey::params(&params), Some(&params));
    assert_eq!(key.to_key(), key);
    assert_eq!(ToKey::params(&key), None);
    assert_eq!(ToKey::to_key(&&params), key);
    assert_eq!(ToKey::params(&&params), Some(&params));
    let dynamic: &dyn ToKey = &params;
    assert_eq!(dynamic.to_key(), key);
}

fn encoded_header(count: u64) -> Vec<u8> {
    let mut bytes = b"cnk\x01".to_vec();
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes
}

fn push_str(bytes: &mut Vec<u8>, text: &[u8]) {
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text);
}

/// One parameter `x` with the given raw value encoding.
fn single(value: &[u8]) -> Vec<u8> {
    let mut bytes = encoded_header(1);
    push_str(&mut bytes, b"x");
    bytes.extend_from_slice(value);
    bytes
}

fn malformed_reason(bytes: &[u8]) -> String {
    match Params::decode(bytes) {
        Err(KeyError::Malformed { reason, .. }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn decode_round_trips_and_checks_canonical_form() {
    let params = key!(
        a = 1,
        b = map([("k", vec![1.5].into())]),
        c = Value::bytes(*b"z")
    );
    let bytes = params.encode();
    assert_eq!(Params::decode(&bytes).unwrap(), params);
    assert_eq!(Params::decode(&key!().encode()).unwrap(), key!());

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(malformed_reason(&trailing).contains("trailing"));
    for end in 0..bytes.len() {
        malformed_reason(&bytes[..end]);
    }
    assert!(malformed_reason(&bytes[..bytes.len() - 1]).contains("exceeds"));
    assert!(malformed_reason(&bytes[..bytes.len() - 2]).contains("truncated"));
    assert!(malformed_reason(b"").contains("truncated"));
    assert!(malformed_reason(b"cnx\x01").contains("magic"));
    assert!(malformed_reason(b"cnk\x02\0\0\0\0\0\0\0\0").contains("version 2"));

    assert!(malformed_reason(&single(&[0x09])).contains("unknown value tag"));
    assert!(malformed_reason(&single(&[0x01, 2])).contains("bool"));
    let mut bad_sign = vec![0x02, 2];
    bad_sign.extend_from_slice(&[0; 16]);
    assert!(malformed_reason(&single(&bad_sign)).contains("sign"));
    let mut negative_zero = vec![0x02, 1];
    negative_zero.extend_from_slice(&[0; 16]);
    assert!(malformed_reason(&single(&negative_zero)).contains("negative zero"));
    let mut float = vec![0x03];
    float.extend_from_slice(&(-0.0f64).to_bits().to_le_bytes());
    assert!(malformed_reason(&single(&float)).contains("-0.0"));
    let mut nan = vec![0x03];
    nan.extend_from_slice(&0x7ff8_0000_0000_0001u64.to_le_bytes());
    assert!(malformed_reason(&single(&nan)).contains("NaN"));
    let mut canonical_nan = vec![0x03];
    canonical_nan.extend_from_slice(&0x7ff8_0000_0000_0000u64.to_le_bytes());
    assert!(Params::decode(&single(&canonical_nan)).is_ok());

    let mut bad_utf8 = vec![0x04];
    push_str(&mut bad_utf8, b"ok\xff");
    assert!(malformed_reason(&single(&bad_utf8)).contains("UTF-8"));
    let mut huge_len = vec![0x05];
    huge_len.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(malformed_reason(&single(&huge_len)).contains("exceeds"));
    let mut huge_list = vec![0x06];
    huge_list.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(malformed_reason(&single(&huge_list)).contains("exceeds"));
}

#[test]
fn decode_rejects_unsorted_and_duplicate_names() {
    let mut unsorted = encoded_header(2);
    push_str(&mut unsorted, b"b");
    unsorted.push(0x00);
    push_str(&mut unsorted, b"a");
    unsorted.push(0x00);
    assert!(malformed_reason(&unsorted).contains("increasing"));

    let mut duplicate = encoded_header(2);
    push_str(&mut duplicate, b"a");
    duplicate.push(0x00);
    push_str(&mut duplicate, b"a");
    duplicate.push(0x00);
    assert!(malformed_reason(&duplicate).contains("increasing"));

    let mut map = vec![0x07];
    map.extend_from_slice(&2u64.to_le_bytes());
    push_str(&mut map, b"k");
    map.push(0x00);
    push_str(&mut map, b"k");
    map.push(0x00);
    assert!(malformed_reason(&single(&map)).contains("map key"));
}

#[test]
fn decode_limits_nesting() {
    let nested = |depth: usize| {
        let mut value = Vec::new();
        for _ in 0..depth {
            value.push(0x06);
            value.extend_from_slice(&1u64.to_le_bytes());
        }
        value.push(0x00);
        single(&value)
    };
    assert!(Params::decode(&nested(256)).is_ok());
    assert!(malformed_reason(&nested(257)).contains("nested"));
    // Far past the limit must fail cleanly rather than overflow the stack.
    assert!(malformed_reason(&nested(100_000)).contains("nested"));
}

#[test]
fn decode_error_message() {
    assert_eq!(
        Params::decode(b"cnk\x01\0\0\0\0\0\0\0\0!")
            .unwrap_err()
            .to_string(),
        "malformed key encoding at byte 12: 1 trailing bytes"
    );
}

/// Applies a few random edits to a valid encoding.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(position, operation, byte) in edits {
        let index = if bytes.is_empty() {
            0
        } else {
            position % bytes.len()
        };
        match operation % 4 {
            0 if !bytes.is_empty() => bytes[index] = byte,
            1 => bytes.insert(index, byte),
            2 if !bytes.is_empty() => {
                bytes.remove(index);
            }
            _ => bytes.truncate(index),
        }
    }
    bytes
}

proptest! {
    #[test]
    fn decode_inverts_encode(params in arb_params()) {
        let bytes = params.encode();
        let decoded = Params::decode(&bytes).unwrap();
        prop_assert_eq!(decoded.encode(), bytes);
        prop_assert_eq!(decoded.key(), params.key());
    }

    #[test]
    fn insertion_order_never_matters(
        entries in proptest::collection::btree_map(super::arb::arb_name(), arb_value(), 0..8)
            .prop_map(|entries| entries.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
    ) {
        let mut shuffled = Params::new();
        for (name, value) in entries.iter().cloned() {
            shuffled.insert(name, value).unwrap();
        }
        let mut sorted = entries;
        sorted.sort_by(|left, right| left.0.cmp(&right.0));
        let mut in_order = Params::new();
        for (name, value) in sorted.into_iter().rev() {
            in_order.insert(name, value).unwrap();
        }
        prop_assert_eq!(shuffled.encode(), in_order.encode());
        prop_assert_eq!(shuffled.key(), in_order.key());
    }

    #[test]
    fn different_encodings_give_different_keys(left in arb_params(), right in arb_params()) {
        if left.encode() != right.encode() {
            prop_assert_ne!(left.key(), right.key());
        } else {
            prop_assert_eq!(left.key(), right.key());
        }
    }

    #[test]
    fn json_round_trip_keeps_the_encoding(params in arb_params()) {
        let json = serde_json::to_string(&params).unwrap();
        let back: Params = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.encode(), params.encode());
    }

    #[test]
    fn decode_never_panics_on_random_bytes(
        header_count in proptest::option::of(0u64..4),
        random in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // Behind a valid header and a small count the random bytes reach the
        // name and value decoders.
        let bytes = match header_count {
            Some(count) => [&encoded_header(count)[..], &random].concat(),
            None => random,
        };
        if let Ok(params) = Params::decode(&bytes) {
            prop_assert_eq!(params.encode(), bytes);
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_encodings(
        params in arb_params(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let bytes = mutate(params.encode(), &edits);
        // Only canonical encodings decode, so whatever decodes re-encodes
        // to exactly the input.
        if let Ok(decoded) = Params::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

#[test]
fn a_repeated_hidden_insert_replaces_like_a_map() {
    let mut params = key!(a = 1);
    params.__insert_unique("a", Value::Bool(true));
    params.__insert_unique("r#b", Value::None);
    assert_eq!(params, key!(a = true, b = ()));
    assert_eq!(params.len(), 2);
}

#[test]
fn nesting_is_limited_when_params_are_built_and_measured_exactly() {
    use super::{MAX_NESTING, MAX_PARAMS_LEN};
    let nested = |levels: usize| {
        let mut value = Value::from("leaf");
        for level in 0..levels {
            value = if level % 2 == 0 {
                Value::List(vec![Value::None, value])
            } else {
                Value::Map(BTreeMap::from([("k".to_owned(), value)]))
            };
        }
        value
    };
    assert_eq!(Value::from(1).depth(), 0);
    assert_eq!(Value::List(Vec::new()).depth(), 1);
    assert_eq!(nested(70).depth(), 70);
    let very_deep = nested(100_000);
    assert_eq!(very_deep.depth(), 100_000, "measured without recursion");
    // Dropping it would recurse 100 000 levels: it is leaked instead.
    std::mem::forget(very_deep);
    let mut params = Params::new();
    params.insert("ok", nested(MAX_NESTING)).unwrap();
    let error = params.insert("deep", nested(MAX_NESTING + 1)).unwrap_err();
    assert!(
        matches!(error, KeyError::TooDeep { ref name, depth: 33, limit: 32 } if name == "deep"),
        "{error:?}"
    );
    assert_eq!(params.len(), 1, "a refused insert changes nothing");
    assert!(params.check_limits().is_ok());
    let large = key!(b = Value::bytes(vec![0; MAX_PARAMS_LEN]));
    assert!(matches!(
        large.check_limits(),
        Err(KeyError::TooLarge {
            limit: MAX_PARAMS_LEN,
            ..
        })
    ));
}
