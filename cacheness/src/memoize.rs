//! What [`#[memoize]`](macro@crate::memoize) needs at run time: the
//! process-wide default cache, and the calls its expansion makes.
//!
//! ```
//! use std::sync::LazyLock;
//! use cacheness::{Cache, CacheConfig, memoize};
//!
//! static MODELS: LazyLock<Cache> = LazyLock::new(|| {
//!     CacheConfig::new().backend("memory").open().expect("an in-process cache opens")
//! });
//!
//! #[memoize(cache = MODELS, version = 2, skip(verbose))]
//! fn fit(dataset: &str, folds: u32, verbose: bool) -> Result<Vec<f64>, String> {
//!     if verbose {
//!         eprintln!("fitting {dataset}");
//!     }
//!     Ok(vec![0.5; folds as usize])
//! }
//!
//! assert_eq!(fit("iris", 3, true), Ok(vec![0.5; 3]));
//! assert_eq!(fit("iris", 3, false), Ok(vec![0.5; 3])); // read back: not fitted again
//! assert_eq!(MODELS.stats()?.entries, 1);
//! # Ok::<(), cacheness::Error>(())
//! ```
//!
//! A memoized function without a `cache = ...` option stores its results in
//! the default cache: the one given to [`set_default_cache`] before its first
//! call, else one opened on first use from the environment and the platform
//! defaults ([`CacheConfig::from_env`]: `CACHENESS_DIR`, `CACHENESS_BACKEND`,
//! ...; sqlite in the platform cache dir when nothing is set).

use std::sync::{Arc, OnceLock};

use crate::{Cache, CacheConfig, Error, Result};

/// The default cache: set once, or opened on first use. A failed open is
/// kept too, so that it is reported once, not retried on every call.
static DEFAULT: OnceLock<std::result::Result<Arc<Cache>, String>> = OnceLock::new();

/// Makes `cache` the default cache of memoized functions that name none.
///
/// Call it before the first memoized call; once the default is set (by this
/// function or by a first call opening it), it stays, and `cache` is handed
/// back as the error. An `Arc<Cache>` shares the cache with the caller.
///
/// ```
/// use cacheness::{CacheConfig, memoize};
///
/// let dir = tempfile::tempdir()?;
/// let cache = CacheConfig::new().dir(dir.path()).open()?;
/// assert!(memoize::set_default_cache(cache).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn set_default_cache(cache: impl Into<Arc<Cache>>) -> std::result::Result<(), Arc<Cache>> {
    let shared = cache.into();
    DEFAULT.set(Ok(Arc::clone(&shared))).map_err(|_| shared)
}

/// The default cache of memoized functions, opened on first use from the
/// environment ([`CacheConfig::from_env`]) unless [`set_default_cache`] gave
/// one.
///
/// # Errors
///
/// Why the default cache could not be opened ([`Error::Config`] with the
/// reason). The open is tried once per process.
pub fn default_cache() -> Result<Arc<Cache>> {
    let opened = DEFAULT.get_or_init(|| {
        CacheConfig::from_env()
            .and_then(|config| config.open())
            .map(Arc::new)
            .map_err(|error| {
                tracing::warn!(%error, "cannot open the default cache; memoized functions run uncached");
                error.to_string()
            })
    });
    match opened {
        Ok(cache) => Ok(Arc::clone(cache)),
        Err(reason) => Err(Error::Config {
            field: "default cache",
            reason: reason.clone(),
        }),
    }
}

/// The calls `#[memoize]` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::ops::Deref;
    use std::sync::Arc;
    use std::time::Duration;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::{Cache, Codec, Error, Params, PutOptions, Result, Value};

    /// The parameter naming the function.
    pub const FUNCTION: &str = "#fn";
    /// The parameter holding the function's `version`, when not 0.
    pub const VERSION: &str = "#version";
    /// The parameter holding a key given by hand (`key = ...`).
    pub const BY_HAND: &str = "#key";

    /// A memoized call's key: the function, its version and its arguments.
    /// An argument that cannot be a key value makes the call run uncached.
    pub struct Key {
        function: &'static str,
        params: Params,
        error: Option<Error>,
    }

    impl Key {
        pub fn new(function: &'static str, version: u64) -> Key {
            let mut params = Params::__with_capacity(4);
            params.__insert_unique(FUNCTION, Value::from(function));
            // Version 0, the default, is left out: a shorter key hashes in
            // fewer blake3 blocks, and every call hashes its key.
            if version != 0 {
                params.__insert_unique(VERSION, Value::from(version));
            }
            Key {
                function,
                params,
                error: None,
            }
        }

        /// Adds an argument under its name. Names cannot collide: Rust
        /// refuses two arguments of one name, and the key's own parameters
        /// start with `#`, which no argument name can.
        pub fn arg<T: MemoizedArgument + ?Sized>(mut self, name: &'static str, value: &T) -> Key {
            if self.error.is_none() {
                match Value::from_serialize(value) {
                    Ok(value) => self.params.__insert_unique(name, value),
                    Err(error) => {
                        self.error = Some(Error::InvalidInput {
                            what: "memoized argument",
                            value: format!("{}({name})", self.function),
                            reason: error.to_string(),
                        });
                    }
                }
            }
            self
        }

        /// Whether the key can be stored: arguments nested too deep, or too
        /// large, cannot be a key (an error of the cache, not the function's).
        fn within_limits(&self) -> Result<()> {
            Ok(self.params.check_limits()?)
        }

        /// The key given by hand, in place of the arguments.
        pub fn by_hand<T: MemoizedArgument + ?Sized>(self, value: &T) -> Key {
            self.arg(BY_HAND, value)
        }

        /// A generic function's type parameter, by its type's name, so that
        /// two instances of the function never share entries.
        pub fn type_param(mut self, name: &'static str, type_name: &'static str) -> Key {
            self.params.__insert_unique(name, Value::from(type_name));
            self
        }
    }

    /// How a memoized call stores its value.
    pub struct Options {
        function: &'static str,
        ttl: Option<Duration>,
        prefix: Option<&'static str>,
    }

    impl Options {
        pub fn new(function: &'static str) -> Options {
            Options {
                function,
                ttl: None,
                prefix: None,
            }
        }

        pub fn ttl(mut self, ttl: Duration) -> Options {
            self.ttl = Some(ttl);
            self
        }

        pub fn prefix(mut self, prefix: &'static str) -> Options {
            self.prefix = Some(prefix);
            self
        }

        fn put_options(&self) -> PutOptions {
            let options = PutOptions::new().prefix(self.prefix.unwrap_or(self.function));
            match self.ttl {
                Some(ttl) => options.ttl(ttl),
                None => options,
            }
        }
    }

    /// An argument of a memoized function: part of its key.
    #[diagnostic::on_unimplemented(
        message = "the argument type `{Self}` is not `Serialize`, so it cannot be part of a memoized function's key",
        label = "an argument of a memoized function",
        note = "derive `serde::Serialize` for it, or leave it out of the key with `#[memoize(skip(name))]`"
    )]
    pub trait MemoizedArgument: Serialize {}
    impl<T: Serialize + ?Sized> MemoizedArgument for T {}

    /// What a memoized function returns: stored, and read back.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be stored by a memoized function: it must be `Serialize + DeserializeOwned`",
        label = "the value a memoized function stores",
        note = "derive `serde::Serialize` and `serde::Deserialize` for it (a borrowed type such as `&str` cannot be read back: return an owned one)"
    )]
    pub trait MemoizedValue: Serialize + DeserializeOwned {}
    impl<T: Serialize + DeserializeOwned> MemoizedValue for T {}

    /// Asserts, at compile time, that the function's value can be stored.
    pub fn stores<T: MemoizedValue>() {}

    /// Which cache a memoized sync function uses: a [`Cache`], an
    /// `AsyncCache`, or a reference, `Arc`, `Box` or `LazyLock` of one.
    #[diagnostic::on_unimplemented(
        message = "`cache = ...` of a memoized function must be a `cacheness::Cache` (or a reference, `Arc`, `Box` or `LazyLock` of one); this is `{Self}`",
        label = "not a cache"
    )]
    pub trait SyncTarget {
        type Codec: Codec;
        fn memoize_sync(&self) -> &Cache<Self::Codec>;
    }

    impl<C: Codec> SyncTarget for Cache<C> {
        type Codec = C;
        fn memoize_sync(&self) -> &Cache<C> {
            self
        }
    }

    #[cfg(feature = "tokio")]
    impl<C: Codec> SyncTarget for crate::AsyncCache<C> {
        type Codec = C;
        fn memoize_sync(&self) -> &Cache<C> {
            self.sync()
        }
    }

    /// A smart pointer or reference to a cache is that cache.
    macro_rules! pointers_to_targets {
        ($target:ident, $method:ident -> $output:ty, $($pointer:ty),+) => {$(
            impl<T: $target + ?Sized> $target for $pointer {
                type Codec = T::Codec;
                fn $method(&self) -> $output {
                    (**self).$method()
                }
            }
        )+};
    }

    pointers_to_targets!(
        SyncTarget, memoize_sync -> &Cache<T::Codec>,
        &T, Arc<T>, Box<T>
    );

    impl<T: SyncTarget, F: FnOnce() -> T> SyncTarget for std::sync::LazyLock<T, F> {
        type Codec = T::Codec;
        fn memoize_sync(&self) -> &Cache<T::Codec> {
            (**self).memoize_sync()
        }
    }

    /// `cache = EXPR` of a sync function, as `&Cache`.
    pub fn sync_target<T: SyncTarget + ?Sized>(target: &T) -> &Cache<T::Codec> {
        target.memoize_sync()
    }

    /// The default cache, for a sync function.
    pub fn default_sync() -> Result<Arc<Cache>> {
        super::default_cache()
    }

    /// Why a memoized call failed: the function, or the cache.
    enum Failure<E> {
        Function(E),
        Cache(Error),
    }

    impl<E> From<Error> for Failure<E> {
        fn from(error: Error) -> Self {
            Failure::Cache(error)
        }
    }

    /// Logs a cache error a memoized call runs past.
    fn log(function: &str, error: &Error) {
        tracing::warn!(function, %error, "the cache failed; the memoized function runs uncached");
    }

    /// The core of every sync call: the value, or the function's own error,
    /// or (the function not run) the cache's.
    fn run<C, T, E>(
        cache: Result<impl Deref<Target = Cache<C>>>,
        key: Key,
        options: &Options,
        compute: &mut Option<impl FnOnce() -> std::result::Result<T, E>>,
    ) -> std::result::Result<T, Failure<E>>
    where
        C: Codec,
        T: MemoizedValue,
    {
        if let Some(error) = key.error {
            return Err(Failure::Cache(error));
        }
        let cache = cache?;
        // A hit needs no put options (whose prefix is a copy), and its key
        // was within the limits when it was stored.
        if let Ok(Some(value)) = cache.get(&key.params) {
            return Ok(value);
        }
        key.within_limits()?;
        cache.get_or_try_insert_with_options(&key.params, &options.put_options(), || {
            let compute = compute.take().expect("a memoized function runs once");
            compute().map_err(Failure::Function)
        })
    }

    /// After a cache error, the function itself.
    fn uncached<T, E>(
        function: &str,
        error: Error,
        compute: Option<impl FnOnce() -> std::result::Result<T, E>>,
    ) -> std::result::Result<T, E> {
        log(function, &error);
        // The engine returns every value it computed, whatever befalls the
        // put, so a cache error means the function has not run.
        let compute = compute.expect("a cache error comes before the function runs");
        compute()
    }

    pub fn call<C, T>(
        cache: Result<impl Deref<Target = Cache<C>>>,
        key: Key,
        options: Options,
        compute: impl FnOnce() -> T,
    ) -> T
    where
        C: Codec,
        T: MemoizedValue,
    {
        let infallible = move || Ok::<T, std::convert::Infallible>(compute());
        match call_result(cache, key, options, infallible) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    pub fn call_result<C, T, E>(
        cache: Result<impl Deref<Target = Cache<C>>>,
        key: Key,
        options: Options,
        compute: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        C: Codec,
        T: MemoizedValue,
    {
        let mut compute = Some(compute);
        match run(cache, key, &options, &mut compute) {
            Ok(value) => Ok(value),
            Err(Failure::Function(error)) => Err(error),
            Err(Failure::Cache(error)) => uncached(options.function, error, compute),
        }
    }

    pub fn call_result_returning<C, T, E>(
        cache: Result<impl Deref<Target = Cache<C>>>,
        key: Key,
        options: Options,
        compute: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        C: Codec,
        T: MemoizedValue,
        E: From<Error>,
    {
        let mut compute = Some(compute);
        match run(cache, key, &options, &mut compute) {
            Ok(value) => Ok(value),
            Err(Failure::Function(error)) => Err(error),
            Err(Failure::Cache(error)) => Err(E::from(error)),
        }
    }

    pub fn call_option<C, T>(
        cache: Result<impl Deref<Target = Cache<C>>>,
        key: Key,
        options: Options,
        compute: impl FnOnce() -> Option<T>,
    ) -> Option<T>
    where
        C: Codec,
        T: MemoizedValue,
    {
        call_result(cache, key, options, move || compute().ok_or(())).ok()
    }

    /// Which cache a memoized async function uses: an `AsyncCache`, an
    /// `Arc<Cache>`, or a reference, `Box` or `LazyLock` of one.
    #[cfg(feature = "tokio")]
    #[diagnostic::on_unimplemented(
        message = "`cache = ...` of a memoized async function must be a `cacheness::AsyncCache` or an `Arc<cacheness::Cache>` (or a reference, `Box` or `LazyLock` of one); this is `{Self}`",
        label = "not an async cache"
    )]
    pub trait AsyncTarget {
        type Codec: Codec;
        fn memoize_async(&self) -> crate::AsyncCache<Self::Codec>;
    }

    #[cfg(feature = "tokio")]
    impl<C: Codec> AsyncTarget for crate::AsyncCache<C> {
        type Codec = C;
        fn memoize_async(&self) -> crate::AsyncCache<C> {
            self.clone()
        }
    }

    #[cfg(feature = "tokio")]
    impl<C: Codec> AsyncTarget for Arc<Cache<C>> {
        type Codec = C;
        fn memoize_async(&self) -> crate::AsyncCache<C> {
            crate::AsyncCache::from(Arc::clone(self))
        }
    }

    #[cfg(feature = "tokio")]
    impl<C: Codec> AsyncTarget for Arc<crate::AsyncCache<C>> {
        type Codec = C;
        fn memoize_async(&self) -> crate::AsyncCache<C> {
            (**self).clone()
        }
    }

    #[cfg(feature = "tokio")]
    pointers_to_targets!(
        AsyncTarget, memoize_async -> crate::AsyncCache<T::Codec>,
        &T, Box<T>
    );

    #[cfg(feature = "tokio")]
    impl<T: AsyncTarget, F: FnOnce() -> T> AsyncTarget for std::sync::LazyLock<T, F> {
        type Codec = T::Codec;
        fn memoize_async(&self) -> crate::AsyncCache<T::Codec> {
            (**self).memoize_async()
        }
    }

    /// `cache = EXPR` of an async function, as an `AsyncCache`.
    #[cfg(feature = "tokio")]
    pub fn async_target<T: AsyncTarget + ?Sized>(target: &T) -> crate::AsyncCache<T::Codec> {
        target.memoize_async()
    }

    /// The default cache, for an async function.
    #[cfg(feature = "tokio")]
    pub fn default_async() -> Result<crate::AsyncCache> {
        super::default_cache().map(crate::AsyncCache::from)
    }

    /// [`run`] for async functions.
    #[cfg(feature = "tokio")]
    async fn run_async<C, T, E>(
        cache: Result<crate::AsyncCache<C>>,
        key: Key,
        options: &Options,
        compute: &mut Option<impl Future<Output = std::result::Result<T, E>>>,
    ) -> std::result::Result<T, Failure<E>>
    where
        C: Codec,
        T: MemoizedValue + Send + 'static,
    {
        if let Some(error) = key.error {
            return Err(Failure::Cache(error));
        }
        key.within_limits()?;
        cache?
            .get_or_try_insert_with_options(&key.params, &options.put_options(), || {
                let compute = compute.take().expect("a memoized function runs once");
                async move { compute.await.map_err(Failure::Function) }
            })
            .await
    }

    #[cfg(feature = "tokio")]
    pub async fn call_async<C, T>(
        cache: Result<crate::AsyncCache<C>>,
        key: Key,
        options: Options,
        compute: impl Future<Output = T>,
    ) -> T
    where
        C: Codec,
        T: MemoizedValue + Send + 'static,
    {
        let infallible = async move { Ok::<T, std::convert::Infallible>(compute.await) };
        match call_result_async(cache, key, options, infallible).await {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    #[cfg(feature = "tokio")]
    pub async fn call_result_async<C, T, E>(
        cache: Result<crate::AsyncCache<C>>,
        key: Key,
        options: Options,
        compute: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E>
    where
        C: Codec,
        T: MemoizedValue + Send + 'static,
    {
        let mut compute = Some(compute);
        match run_async(cache, key, &options, &mut compute).await {
            Ok(value) => Ok(value),
            Err(Failure::Function(error)) => Err(error),
            Err(Failure::Cache(error)) => {
                log(options.function, &error);
                let compute = compute.expect("a cache error comes before the function runs");
                compute.await
            }
        }
    }

    #[cfg(feature = "tokio")]
    pub async fn call_result_returning_async<C, T, E>(
        cache: Result<crate::AsyncCache<C>>,
        key: Key,
        options: Options,
        compute: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E>
    where
        C: Codec,
        T: MemoizedValue + Send + 'static,
        E: From<Error>,
    {
        let mut compute = Some(compute);
        match run_async(cache, key, &options, &mut compute).await {
            Ok(value) => Ok(value),
            Err(Failure::Function(error)) => Err(error),
            Err(Failure::Cache(error)) => Err(E::from(error)),
        }
    }

    #[cfg(feature = "tokio")]
    pub async fn call_option_async<C, T>(
        cache: Result<crate::AsyncCache<C>>,
        key: Key,
        options: Options,
        compute: impl Future<Output = Option<T>>,
    ) -> Option<T>
    where
        C: Codec,
        T: MemoizedValue + Send + 'static,
    {
        let fallible = async move { compute.await.ok_or(()) };
        call_result_async(cache, key, options, fallible).await.ok()
    }
}
