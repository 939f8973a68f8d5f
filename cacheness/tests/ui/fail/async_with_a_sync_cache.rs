use std::sync::LazyLock;

use cacheness::{Cache, CacheConfig};

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| CacheConfig::new().backend("memory").open().unwrap());

#[cacheness::memoize(cache = CACHE)]
async fn users(id: u32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
