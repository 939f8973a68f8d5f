//! Entry signing: a keyed blake3 MAC over an entry's fields, so metadata edited by
//! hand (a size, a hash, a blob name, an expiry) is rejected instead of served.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::blob::create_private_file;
use crate::entry::{Entry, Location};
use crate::error::{Error, Result};

/// The name of the key file a cache creates in its dir when signing is on.
pub const KEY_FILE: &str = "signing.key";

/// Signs and checks entries with a 32-byte secret key.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with this key.
    pub fn new(key: [u8; 32]) -> Self {
        Signer { key }
    }

    /// The signer whose key is in `dir/signing.key`, creating the file (mode 0600,
    /// 32 random bytes) if it does not exist. Several processes creating it at once
    /// agree on one key: the file is created exclusively and the losers read it.
    pub fn from_key_file(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        match create_private_file(&path) {
            Ok(mut file) => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|error| Error::Config {
                    field: "signing",
                    reason: format!("no randomness for a signing key: {error}"),
                })?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|source| Error::io("write signing key", &path, source))?;
                Ok(Signer::new(key))
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                // A creator may still be writing it: an empty or short file is retried.
                for _ in 0..100 {
                    let bytes = fs::read(&path)
                        .map_err(|source| Error::io("read signing key", &path, source))?;
                    if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                        return Ok(Signer::new(key));
                    }
                    if bytes.len() > 32 {
                        break;
                    }
                    std::thread::yield_now();
                }
                Err(Error::Corrupted {
                    what: "signing key",
                    path,
                    reason: "not 32 bytes".into(),
                })
            }
            Err(source) => Err(Error::io("create signing key", path, source)),
        }
    }

    /// The signature of `entry`: 64 hex characters.
    pub fn sign(&self, entry: &Entry) -> String {
        self.mac(entry).to_hex().to_string()
    }

    /// Whether `entry` carries its valid signature.
    pub fn verify(&self, entry: &Entry) -> bool {
        let Some(signature) = entry.signature.as_deref() else {
            return false;
        };
        let Ok(given) = blake3::Hash::from_hex(signature) else {
            return false;
        };
        // blake3::Hash compares in constant time.
        given == self.mac(entry)
    }

    /// Everything but the access fields (which reads move) and the signature itself,
    /// each length-prefixed so no two entries feed the same bytes.
    fn mac(&self, entry: &Entry) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        let mut field = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"cacheness-entry-v1");
        field(entry.key.as_bytes());
        field(entry.prefix.as_bytes());
        field(entry.description.as_bytes());
        field(entry.type_tag.as_bytes());
        field(entry.codec.as_bytes());
        field(
            &entry
                .params
                .as_ref()
                .map(|params| params.encode())
                .unwrap_or_default(),
        );
        field(&entry.created_at.to_le_bytes());
        match entry.expires_at {
            Some(expires_at) => field(&[&[1u8][..], &expires_at.to_le_bytes()].concat()),
            None => field(&[0]),
        }
        field(&entry.stored_size.to_le_bytes());
        field(&entry.raw_size.to_le_bytes());
        field(entry.compression.as_str().as_bytes());
        field(&entry.content_hash.0);
        // The bytes themselves are covered by the content hash, which every read of a
        // signed entry checks; the blob's name is not signed (it is chosen after the
        // blob header, which carries the signature, is written), and a name edited to
        // point at other bytes fails that hash check.
        match &entry.location {
            Location::Inline(_) => field(b"inline"),
            Location::Blob(_) => field(b"blob"),
        }
        field(&serde_json::to_vec(&entry.user_metadata).unwrap_or_default());
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Compression, ContentHash, UserMetadata};
    use crate::key::CacheKey;

    fn entry() -> Entry {
        Entry {
            key: CacheKey::from_bytes([1; 16]),
            prefix: String::new(),
            description: String::new(),
            type_tag: "t".into(),
            codec: "json".into(),
            params: None,
            created_at: 1,
            accessed_at: 1,
            expires_at: Some(100),
            access_count: 0,
            stored_size: 3,
            raw_size: 3,
            compression: Compression::None,
            content_hash: ContentHash::of(b"abc"),
            location: Location::Blob("01/01010101010101010101010101010101-0000000000000000".into()),
            signature: None,
            user_metadata: UserMetadata::new(),
        }
    }

    #[test]
    fn a_signed_entry_verifies_and_any_edit_breaks_it() {
        let signer = Signer::new([7; 32]);
        let mut signed = entry();
        signed.signature = Some(signer.sign(&signed));
        assert!(signer.verify(&signed));
        let edits: [fn(&mut Entry); 6] = [
            |e| e.stored_size += 1,
            |e| e.expires_at = None,
            |e| e.content_hash = ContentHash::of(b"abd"),
            |e| e.location = Location::Inline(b"abc".to_vec()),
            |e| e.codec = "raw".into(),
            |e| e.signature = Some("00".repeat(32)),
        ];
        for edit in edits {
            let mut edited = signed.clone();
            edit(&mut edited);
            assert!(!signer.verify(&edited), "{edited:?}");
        }
        let mut touched = signed.clone();
        touched.accessed_at = 99;
        touched.access_count = 5;
        assert!(
            signer.verify(&touched),
            "reads do not invalidate the signature"
        );
        assert!(
            !Signer::new([8; 32]).verify(&signed),
            "another key rejects it"
        );
        assert!(!signer.verify(&entry()), "an unsigned entry is rejected");
    }

    #[test]
    fn the_key_file_is_created_private_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Signer::from_key_file(dir.path()).unwrap();
        let second = Signer::from_key_file(dir.path()).unwrap();
        assert_eq!(first.key, second.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(Signer::from_key_file(dir.path()).is_err());
    }
}
