//! Values through every built-in codec: what reads back, what is refused at
//! put, bytes stored as bytes, and reads across codecs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cacheness_core::{Cache, Error, NamedCodec, RAW_CODEC, key};
use cacheness_memory::MemoryBackend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn cache(codec: NamedCodec) -> Cache {
    Cache::builder()
        .codec(codec)
        .open(MemoryBackend::new())
        .unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Model {
    Tree { depth: u32, scores: Vec<f64> },
    Baseline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Run {
    name: String,
    #[serde(flatten)]
    model: Model,
    by_fold: HashMap<u64, f64>,
    big: u128,
    note: Option<String>,
}

#[test]
fn every_codec_reads_back_what_it_stored() {
    let run = Run {
        name: "xgboost".into(),
        model: Model::Tree {
            depth: 6,
            scores: vec![0.1, 0.25, 1e-300],
        },
        by_fold: HashMap::from([(1, 0.5), (2, 0.75)]),
        big: u128::from(u64::MAX) + 9,
        note: None,
    };
    for &codec in NamedCodec::ALL {
        let cache = cache(codec);
        let key = key!(run = 1);
        cache.put(&key, &run).unwrap();
        assert_eq!(
            cache.get::<Run>(&key).unwrap(),
            Some(run.clone()),
            "{codec}"
        );
        assert_eq!(cache.entry(&key).unwrap().unwrap().codec, codec.name());
        let value = serde_json::json!({"a": [1, 2.5, null], "b": {"c": true}});
        cache.put(&key!(run = 2), &value).unwrap();
        assert_eq!(
            cache.get::<serde_json::Value>(&key!(run = 2)).unwrap(),
            Some(value),
            "{codec}"
        );
    }
}

#[test]
fn json_refuses_at_put_what_it_could_not_read_back() {
    let cache = cache(NamedCodec::Json);
    let key = key!(model = "nan");
    let error = cache.put(&key, &vec![0.5, f64::NAN]).unwrap_err();
    assert!(matches!(error, Error::Encode { .. }), "{error}");
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(message.contains("[1] is NaN"), "{message}");
    assert!(!cache.contains(&key).unwrap(), "nothing stored");
    let keyed_by_pairs = BTreeMap::from([((1, 2), "pair")]);
    assert!(cache.put(&key, &keyed_by_pairs).is_err());
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_stores_what_json_refuses() {
    let cache = cache(NamedCodec::Msgpack);
    let key = key!(model = "nan");
    cache.put(&key, &vec![0.5, f64::INFINITY]).unwrap();
    assert_eq!(
        cache.get::<Vec<f64>>(&key).unwrap(),
        Some(vec![0.5, f64::INFINITY])
    );
    let keyed_by_pairs = BTreeMap::from([((1, 2), "pair".to_owned())]);
    cache.put(&key, &keyed_by_pairs).unwrap();
    assert_eq!(cache.get(&key).unwrap(), Some(keyed_by_pairs));
}

#[test]
fn byte_values_are_stored_as_bytes_whatever_the_codec() {
    let megabyte: Vec<u8> = (0..1u32 << 20).map(|i| (i * 131 % 251) as u8).collect();
    for &codec in NamedCodec::ALL {
        let cache = Cache::builder()
            .codec(codec)
            .verify_integrity(true)
            .open(MemoryBackend::new())
            .unwrap();
        let key = key!(blob = "weights");
        cache.put(&key, &megabyte).unwrap();
        let entry = cache.entry(&key).unwrap().unwrap();
        assert_eq!(entry.codec, RAW_CODEC, "{codec}");
        assert!(
            entry.stored_size <= megabyte.len() as u64,
            "{codec}: not inflated"
        );
        assert_eq!(cache.get_bytes(&key).unwrap().as_ref(), Some(&megabyte));
        assert_eq!(
            cache.get::<Vec<u8>>(&key).unwrap().as_ref(),
            Some(&megabyte)
        );
        // And the other way round: put_bytes, read as a Vec<u8>.
        cache.put_bytes(&key!(blob = "raw"), b"abc").unwrap();
        assert_eq!(
            cache.get::<Vec<u8>>(&key!(blob = "raw")).unwrap(),
            Some(b"abc".to_vec())
        );
        let error = cache.get::<Vec<String>>(&key!(blob = "raw")).unwrap_err();
        assert!(matches!(error, Error::Decode { .. }), "{codec}: {error}");
    }
}

/// JSON under a name of its own: a codec outside the built-in ones.
#[derive(Debug)]
struct Private;

impl cacheness_core::Codec for Private {
    fn name(&self) -> &str {
        "private"
    }
    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Vec<u8>, cacheness_core::BoxError> {
        Ok(serde_json::to_vec(value)?)
    }
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &mut [u8],
    ) -> Result<T, cacheness_core::BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[test]
fn built_in_codecs_read_each_other_and_other_codecs_are_a_clear_error() {
    let backend = Arc::new(MemoryBackend::new());
    for &codec in NamedCodec::ALL {
        let cache = Cache::builder()
            .codec(codec)
            .open_shared(backend.clone())
            .unwrap();
        cache
            .put(&key!(written_by = codec.name()), &vec![1.5f64])
            .unwrap();
    }
    for &reader in NamedCodec::ALL {
        let cache = Cache::builder()
            .codec(reader)
            .open_shared(backend.clone())
            .unwrap();
        for &writer in NamedCodec::ALL {
            assert_eq!(
                cache
                    .get::<Vec<f64>>(&key!(written_by = writer.name()))
                    .unwrap(),
                Some(vec![1.5]),
                "{reader} reads {writer}"
            );
        }
    }
    let private = Cache::builder()
        .codec(Private)
        .open_shared(backend.clone())
        .unwrap();
    private
        .put(&key!(written_by = "private"), &vec![1u32])
        .unwrap();
    let error = private
        .get::<Vec<u32>>(&key!(written_by = "json"))
        .unwrap_err();
    assert!(
        matches!(&error, Error::CodecMismatch { stored, requested, .. }
            if stored == "json" && requested == "private"),
        "{error}"
    );
    let named = Cache::builder().open_shared(backend).unwrap();
    assert!(matches!(
        named.get::<Vec<u32>>(&key!(written_by = "private")),
        Err(Error::CodecMismatch { .. })
    ));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum BytesOrText {
    Bytes(Vec<u8>),
    Text(String),
}

#[test]
fn values_that_merely_look_like_bytes_read_back_as_themselves() {
    for &codec in NamedCodec::ALL {
        let cache = cache(codec);
        let empty = serde_json::json!([]);
        cache.put(&key!(v = "empty"), &empty).unwrap();
        assert_eq!(
            cache.get::<serde_json::Value>(&key!(v = "empty")).unwrap(),
            Some(empty),
            "{codec}"
        );
        let bytes = BytesOrText::Bytes(b"abc".to_vec());
        cache.put(&key!(v = "bytes"), &bytes).unwrap();
        assert_eq!(
            cache.get::<BytesOrText>(&key!(v = "bytes")).unwrap(),
            Some(bytes),
            "{codec}"
        );
        cache.put(&key!(v = "raw"), &vec![1u8, 2]).unwrap();
        assert_eq!(
            cache.get::<serde_json::Value>(&key!(v = "raw")).unwrap(),
            Some(serde_json::json!([1, 2])),
            "{codec}"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Nested {
    Leaf(i64),
    Text(String),
    Floats(Vec<f64>),
    Map(BTreeMap<String, Nested>),
    List(Vec<Nested>),
}

fn nested() -> impl Strategy<Value = Nested> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Nested::Leaf),
        ".{0,12}".prop_map(Nested::Text),
        prop::collection::vec(-1e300f64..1e300, 0..6).prop_map(Nested::Floats),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::btree_map(".{0,6}", inner.clone(), 0..4).prop_map(Nested::Map),
            prop::collection::vec(inner, 0..4).prop_map(Nested::List),
        ]
    })
}

proptest! {
    #[test]
    fn nested_values_round_trip_through_every_codec(value in nested()) {
        for &codec in NamedCodec::ALL {
            let cache = cache(codec);
            cache.put(&key!(value = "nested"), &value).unwrap();
            prop_assert_eq!(cache.get::<Nested>(&key!(value = "nested")).unwrap(), Some(value.clone()));
        }
    }
}
