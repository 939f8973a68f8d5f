//! Entry signing: a keyed blake3 MAC over an entry's fields, so metadata edited by
//! hand (a size, a hash, a blob name, an expiry) is rejected instead of served.
//!
//! A cache dir records which key signs it: `signing.key` holds the key itself
//! when the cache made it ([`CacheBuilder::sign_entries`](crate::CacheBuilder::sign_entries)),
//! and `signing.id` a fingerprint of the key (never the key) from the first
//! signed open on. A handle with another key is refused at open, so it cannot
//! read the whole cache as forged. An entry whose signature does not match is a
//! miss and is kept: reads never delete for a signature; `verify` reports such
//! entries and `verify --repair` removes them.
//!
//! A dir that records a key (either file, of any kind) is not opened for
//! writing without one: that handle's entries would be unsigned, hidden from
//! the signed handles and removed by their `verify --repair`. A read-only open
//! without a key is allowed; it checks no signatures.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::{MetadataBackend, ScanFilter};
use crate::blob::BlobHeader;
use crate::blob::check::{check_blob_name, check_params, check_stored};
use crate::blob::format::stored_offset;
use crate::cache::Cache;
use crate::codec::Codec;
use crate::entry::{Entry, Location};
use crate::error::{Error, Result};
use crate::files::create_private_file;
use crate::files::open_regular_read;
use crate::key::CacheKey;
use crate::ops::Progress;

/// The name of the key file a cache creates in its dir when signing is on.
pub const KEY_FILE: &str = "signing.key";

/// The name of the file that records which key signs a cache dir: the key's
/// [`fingerprint`](Signer::fingerprint), 64 hex characters and a newline.
pub const ID_FILE: &str = "signing.id";

/// At the first signed open of a dir that has no [`ID_FILE`] yet, up to this
/// many entries are read to see whether they were signed with another key.
const FIRST_OPEN_SAMPLE: usize = 256;

/// [`Cache::sign_unsigned`] reads entries in pages of this many.
const SIGN_PAGE: usize = 1_000;

/// Why [`Cache::sign_unsigned`] leaves an entry that changed under it.
const CHANGED: &str =
    "changed by another writer while it was being signed; left to the newer version";

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
        // A dir that records another key must not get a new key file that would
        // then disagree with the record.
        let id = dir.join(ID_FILE);
        if std::fs::symlink_metadata(&path).is_err() && read_fingerprint(&id)?.is_some() {
            return Err(Error::Config {
                field: "signing",
                reason: format!(
                    "{} records the key this cache is signed with, and {} does not exist: pass that key",
                    id.display(),
                    path.display()
                ),
            });
        }
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
                    if let Some(signer) = Signer::read_key_file(dir)? {
                        return Ok(signer);
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

    /// The signer whose key is in `dir/signing.key`, without creating the file:
    /// `None` if it does not exist or is shorter than a key (a creator may still
    /// be writing it). What read-only opens use.
    pub fn read_key_file(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(KEY_FILE);
        let bytes = match read_small_file(&path, 33) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::io("read signing key", &path, source)),
        };
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(key) => Ok(Some(Signer::new(key))),
            Err(_) if bytes.len() < 32 => Ok(None),
            Err(_) => Err(Error::Corrupted {
                what: "signing key",
                path,
                reason: "longer than 32 bytes".into(),
            }),
        }
    }

    /// A fingerprint of the key: 64 hex characters that tell two keys apart and
    /// reveal nothing of the key (a keyed blake3 hash of a fixed text).
    pub fn fingerprint(&self) -> String {
        blake3::keyed_hash(&self.key, b"cacheness signing key fingerprint v1")
            .to_hex()
            .to_string()
    }

    /// Whether `other` signs with the same key, compared in constant time.
    fn same_key(&self, other: &Signer) -> bool {
        blake3::Hash::from_bytes(self.key) == blake3::Hash::from_bytes(other.key)
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

/// What [`Cache::sign_unsigned`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignReport {
    /// Entries read.
    pub entries: u64,
    /// Unsigned entries signed now.
    pub signed: u64,
    /// Entries that already carried their valid signature.
    pub already_signed: u64,
    /// Entries left as they were, and why: a signature that does not match
    /// (edited by hand, or made with another key: never signed again), bytes
    /// that fail their size or hash check, parameters that do not hash to the
    /// key, a missing blob, or a newer version put by another writer meanwhile.
    pub refused: Vec<(CacheKey, String)>,
    /// How long it took.
    pub elapsed: Duration,
}

impl<C: Codec> Cache<C> {
    /// Signs, in place, every entry that has no signature yet: what a cache
    /// that turned [`sign_entries`](crate::CacheBuilder::sign_entries) on has
    /// from before. Until then such entries read as misses (they are kept, and
    /// [`verify`](Cache::verify) lists them as corrupted).
    ///
    /// Only an intact entry is signed: its stored bytes must match their size
    /// and content hash (and decompress), and its parameters must hash to its
    /// key. An entry whose signature exists but does not match is never signed
    /// again: that is what an edit by hand looks like. Each refusal is in the
    /// report with its reason; nothing is removed.
    ///
    /// A blob's header carries the signature too (rebuild checks it), so the
    /// bytes of a blob entry are written to a new blob with a signed header,
    /// the entry is pointed at it, and the old blob is removed; blob names are
    /// never reused, so no reader or memory layer can see a mix.
    ///
    /// Other writers may work meanwhile. An entry is replaced only if it is
    /// still the version that was checked: it is read again right before the
    /// put, and if the put reports that it replaced another version (a writer
    /// got in between, a window of microseconds), that version is put back and
    /// the signed copy removed, so the newer entry wins. Readers may see the
    /// older, signed version during that window, and reads recorded in it
    /// are lost from the access statistics.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the cache has no signing key, [`Error::ReadOnly`]
    /// on a read-only cache; backend and blob store errors.
    ///
    /// ```
    /// use cacheness_core::{Cache, key, ops::no_progress};
    /// use cacheness_memory::MemoryBackend;
    /// use std::sync::Arc;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let backend = Arc::new(MemoryBackend::new());
    /// // A cache written without signing...
    /// Cache::builder().dir(dir.path()).open_shared(backend.clone())?
    ///     .put(&key!(model = "xgboost"), &[0.1, 0.9])?;
    /// // ...opened with signing on: the old entry is a miss, and kept.
    /// let cache = Cache::builder().dir(dir.path()).sign_entries().open_shared(backend)?;
    /// assert_eq!(cache.get::<Vec<f64>>(&key!(model = "xgboost"))?, None);
    ///
    /// let report = cache.sign_unsigned(&mut no_progress)?;
    /// assert_eq!((report.signed, report.refused.len()), (1, 0));
    /// assert_eq!(cache.get::<Vec<f64>>(&key!(model = "xgboost"))?, Some(vec![0.1, 0.9]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign_unsigned(&self, progress: &mut dyn FnMut(Progress)) -> Result<SignReport> {
        let started = Instant::now();
        self.check_writable("sign entries")?;
        let Some(signer) = self.signer() else {
            return Err(Error::Config {
                field: "signing",
                reason: "the cache has no signing key to sign entries with (open it with sign_entries or signing_key)".into(),
            });
        };
        let backend = self.backend();
        let total = backend.len().ok();
        let mut report = SignReport::default();
        let mut after = None;
        loop {
            let mut filter = ScanFilter::all().limit(SIGN_PAGE);
            filter.after = after;
            let mut page = Vec::with_capacity(SIGN_PAGE);
            backend.scan(&filter, &mut |entry| {
                page.push(entry);
                ControlFlow::Continue(())
            })?;
            let full = page.len() == SIGN_PAGE;
            after = page.last().map(|entry| entry.key);
            for entry in page {
                report.entries += 1;
                if signer.verify(&entry) {
                    report.already_signed += 1;
                } else if entry.signature.is_some() {
                    report.refused.push((
                        entry.key,
                        "its signature does not match (edited by hand, or made with another key); not signed again".into(),
                    ));
                } else {
                    match self.sign_in_place(signer, &entry)? {
                        Ok(()) => report.signed += 1,
                        Err(reason) => report.refused.push((entry.key, reason)),
                    }
                }
                progress(Progress {
                    phase: "entries",
                    done: report.entries,
                    total,
                });
            }
            if !full {
                break;
            }
        }
        backend.flush()?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Signs one unsigned entry if it is intact; `Ok(Err(reason))` if not.
    fn sign_in_place(
        &self,
        signer: &Signer,
        entry: &Entry,
    ) -> Result<std::result::Result<(), String>> {
        if let Err(reason) = check_params(entry.params.as_ref(), entry.key) {
            return Ok(Err(format!("its {reason}")));
        }
        let mut signed = entry.clone();
        let new_blob = match &entry.location {
            Location::Inline(bytes) => {
                if let Err(reason) = check_stored(entry, bytes, true) {
                    return Ok(Err(reason));
                }
                signed.signature = Some(signer.sign(&signed));
                None
            }
            Location::Blob(name) => {
                let Some(blobs) = self.blob_store() else {
                    return Ok(Err("it names a blob but the cache has no blob store".into()));
                };
                if check_blob_name(entry, name).is_err() {
                    return Ok(Err(format!(
                        "its blob name `{}` is not one of its key",
                        name.escape_debug()
                    )));
                }
                let file = match blobs.read_stored(name) {
                    Ok(Some(file)) => file,
                    Ok(None) => return Ok(Err("its blob file is missing".into())),
                    Err(error) => return Ok(Err(error.to_string())),
                };
                let stored = match stored_offset(&file) {
                    Ok(offset) => &file[offset..],
                    Err(error) => return Ok(Err(error.to_string())),
                };
                if let Err(reason) = check_stored(entry, stored, true) {
                    return Ok(Err(reason));
                }
                // The signature covers the location's kind, not the blob's
                // name, so it goes into the new header before the name exists.
                signed.signature = Some(signer.sign(&signed));
                let header = BlobHeader::from_entry(&signed).encode();
                let name = blobs.write(&entry.key, &[&header, stored])?;
                signed.location = Location::Blob(name.clone());
                Some(name)
            }
        };
        self.replace_if_unchanged(entry, signed, new_blob.as_deref())
    }

    /// Puts `signed` in place of `read` if the backend still holds that
    /// version (see [`sign_unsigned`](Cache::sign_unsigned) for the race this
    /// accepts); removes the blob that lost.
    fn replace_if_unchanged(
        &self,
        read: &Entry,
        mut signed: Entry,
        new_blob: Option<&str>,
    ) -> Result<std::result::Result<(), String>> {
        let backend = self.backend();
        let discard = |name: Option<&str>| {
            if let Some(name) = name {
                self.delete_blob_named(name);
            }
        };
        // Most concurrent changes are seen here, before anything is written.
        match backend.get(&read.key)? {
            Some(current) if current.same_version(read) && current.signature.is_none() => {
                signed.accessed_at = current.accessed_at;
                signed.access_count = current.access_count;
            }
            _ => {
                discard(new_blob);
                return Ok(Err(CHANGED.into()));
            }
        }
        let displaced = backend.put(signed.clone())?;
        if let Some(replaced) = &displaced
            && replaced.same_version(read)
        {
            if new_blob.is_some() {
                discard(replaced.blob_name());
            }
            return Ok(Ok(()));
        }
        // Another writer got in between the look and the put: its version
        // goes back, and the signed copy goes.
        match displaced {
            None => {
                // Removed meanwhile: so is the signed copy, if still there.
                if backend.remove_if_unchanged(&signed)?.is_some() {
                    discard(new_blob);
                }
            }
            Some(newer) => match backend.put(newer)? {
                Some(back) if back.same_version(&signed) => discard(new_blob),
                Some(third) => {
                    // A third writer replaced the signed copy (and removed its
                    // blob) before the newer version went back: the third is
                    // the latest, so it goes back too.
                    tracing::warn!(key = %read.key, "entries changed quickly while being signed; the latest put back");
                    backend.put(third)?;
                }
                None => {}
            },
        }
        Ok(Err(CHANGED.into()))
    }
}

/// Checks that `signer` is the key `dir` is signed with, refusing it
/// ([`Error::Config`], field "signing", naming the file) when `signing.key`
/// holds another key or `signing.id` records another one. At the first signed
/// open of a dir (no `signing.id` yet) the entries already there are sampled:
/// if they are signed and none with this key, the key is refused; otherwise
/// `signing.id` is created (mode 0600), unless `read_only`.
pub(crate) fn check_dir_key(
    dir: &Path,
    signer: &Signer,
    backend: &dyn MetadataBackend,
    read_only: bool,
) -> Result<()> {
    let refuse = |reason: String| Error::Config {
        field: "signing",
        reason,
    };
    if let Some(on_disk) = Signer::read_key_file(dir)?
        && !on_disk.same_key(signer)
    {
        return Err(refuse(format!(
            "the cache dir is signed with the key in {}, not the key given",
            dir.join(KEY_FILE).display()
        )));
    }
    let id_path = dir.join(ID_FILE);
    let fingerprint = signer.fingerprint();
    let recorded = match read_fingerprint(&id_path)? {
        Some(recorded) => recorded,
        None => {
            if !sample_verifies(backend, signer)? {
                return Err(refuse(format!(
                    "the entries in the cache dir {} are signed with another key",
                    dir.display()
                )));
            }
            if read_only {
                return Ok(());
            }
            match record_fingerprint(&id_path, &fingerprint)? {
                None => return Ok(()),
                Some(recorded) => recorded,
            }
        }
    };
    if recorded != fingerprint {
        return Err(refuse(format!(
            "the cache dir is signed with another key (its fingerprint is in {})",
            id_path.display()
        )));
    }
    Ok(())
}

/// The file by which `dir` records that it is signed: `signing.key` or else
/// `signing.id`, if either name is taken by a file of any kind (a symlink, a
/// FIFO or a directory counts, and none is followed or opened); `None` if
/// neither is, or `dir` is missing or not a directory.
pub fn signing_record(dir: &Path) -> Result<Option<PathBuf>> {
    for name in [KEY_FILE, ID_FILE] {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => return Ok(Some(path)),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(source) => return Err(Error::io("inspect signing record", path, source)),
        }
    }
    Ok(None)
}

/// Refuses a writable open without a signing key of a dir that records one
/// ([`Error::Config`], field "signing", naming the file; `Ok` if it records
/// none): the entries it wrote would be unsigned, so the signed handles would
/// hide them and their `verify --repair` would remove them. A config that
/// disagrees with the dir is an error, never a deletion.
///
/// [`CacheBuilder::open`](crate::CacheBuilder::open) calls it; a caller that
/// creates or migrates files in the dir before that open calls it first.
pub fn refuse_unsigned_writer(dir: &Path) -> Result<()> {
    match signing_record(dir)? {
        None => Ok(()),
        Some(record) => Err(Error::Config {
            field: "signing",
            reason: format!(
                "{} says the cache is signed, and this open has no signing key: the entries \
                 it wrote would be unsigned, hidden from signed opens and removed by \
                 `verify --repair`; turn on `sign_entries` (or pass the key with \
                 `signing_key`), or open read-only",
                record.display()
            ),
        }),
    }
}

/// Whether the signed entries among the first few are signed with `signer`'s
/// key (true when there are none): one that verifies is enough, since an entry
/// edited by hand can fail on its own.
fn sample_verifies(backend: &dyn MetadataBackend, signer: &Signer) -> Result<bool> {
    let mut signed = 0;
    let mut verified = false;
    backend.scan(&ScanFilter::all().limit(FIRST_OPEN_SAMPLE), &mut |entry| {
        if entry.signature.is_some() {
            signed += 1;
            if signer.verify(&entry) {
                verified = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(verified || signed == 0)
}

/// The fingerprint recorded in `path`; `None` if there is no such file.
fn read_fingerprint(path: &Path) -> Result<Option<String>> {
    // A creator writes it in one call; an empty or partial file is retried.
    for _ in 0..100 {
        let bytes = match read_small_file(path, 128) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::io("read signing id", path, source)),
        };
        let text = String::from_utf8_lossy(&bytes);
        let fingerprint = text.trim_end();
        if fingerprint.len() == 64 && fingerprint.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Ok(Some(fingerprint.to_ascii_lowercase()));
        }
        if bytes.len() > 65 || text.ends_with('\n') {
            break;
        }
        std::thread::yield_now();
    }
    Err(Error::Corrupted {
        what: "signing id",
        path: path.to_owned(),
        reason: "not a 64-hex-digit key fingerprint".into(),
    })
}

/// Creates `path` (0600) holding `fingerprint`; `Some(recorded)` if another
/// process created it first.
fn record_fingerprint(path: &Path, fingerprint: &str) -> Result<Option<String>> {
    match create_private_file(path) {
        Ok(mut file) => {
            file.write_all(format!("{fingerprint}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| Error::io("write signing id", path, source))?;
            Ok(None)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read_fingerprint(path),
        Err(source) => Err(Error::io("create signing id", path, source)),
    }
}

/// At most `limit` bytes of the regular file `path` (links and FIFOs refused).
fn read_small_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular_read(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Keys whose signature mismatch was logged, so a read loop over a cache signed
/// with another key (or not signed yet) logs each entry once, not on every get.
#[derive(Debug, Default)]
pub(crate) struct MismatchLog {
    warned: Mutex<HashSet<CacheKey>>,
}

/// Keys [`MismatchLog`] remembers; past this it logs one last line and stops.
const MISMATCH_LOG_KEYS: usize = 1024;

impl MismatchLog {
    /// Logs that `entry` failed its signature check, once per key.
    pub(crate) fn warn(&self, entry: &Entry) {
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.len() > MISMATCH_LOG_KEYS || !warned.insert(entry.key) {
            return;
        }
        if warned.len() > MISMATCH_LOG_KEYS {
            tracing::warn!(
                "more than {MISMATCH_LOG_KEYS} entries fail their signature check; no more are logged"
            );
        } else if entry.signature.is_none() {
            tracing::warn!(
                key = %entry.key,
                "entry is not signed (written before signing was turned on?); read as a miss and kept: Cache::sign_unsigned signs it"
            );
        } else {
            tracing::warn!(
                key = %entry.key,
                "entry's signature does not match (edited, or signed with another key); read as a miss and kept: verify reports it"
            );
        }
    }

    /// How many keys were logged.
    #[cfg(test)]
    fn logged(&self) -> usize {
        self.warned.lock().map(|warned| warned.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::entry::{Compression, ContentHash, UserMetadata};

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

    #[test]
    fn a_fingerprint_tells_keys_apart_without_the_key() {
        let one = Signer::new([1; 32]);
        assert_eq!(one.fingerprint(), Signer::new([1; 32]).fingerprint());
        assert_ne!(one.fingerprint(), Signer::new([2; 32]).fingerprint());
        assert_eq!(one.fingerprint().len(), 64);
        assert!(!one.fingerprint().contains(&"01".repeat(32)));
    }

    #[test]
    fn mismatches_are_logged_once_per_key_and_then_not_at_all() {
        let log = MismatchLog::default();
        let mut unsigned = entry();
        for _ in 0..3 {
            log.warn(&unsigned);
        }
        assert_eq!(log.logged(), 1);
        for index in 0..(MISMATCH_LOG_KEYS as u32 + 10) {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&index.to_le_bytes());
            bytes[15] = 1;
            unsigned.key = CacheKey::from_bytes(bytes);
            log.warn(&unsigned);
        }
        assert_eq!(log.logged(), MISMATCH_LOG_KEYS + 1, "the set stays bounded");
    }
}
