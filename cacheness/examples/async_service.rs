//! An async service that memoizes a slow upstream call.
//!
//! A small line-based TCP service asks an "upstream" (another local server,
//! which counts its requests) for a city's forecast; the handler is an
//! `async fn` memoized with `#[cacheness::memoize]` over an `AsyncCache`.
//! 20 clients at once send 10 requests each for three cities: the upstream is
//! called three times, once per city, and every other request is served
//! from the cache.
//!
//! `cargo run --release --example async_service` (`cargo test` runs it too).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cacheness::{AsyncCache, CacheConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The service's cache: in the platform cache dir in a real service; here a
/// temp dir, so the example starts empty.
static CACHE: LazyLock<(tempfile::TempDir, AsyncCache)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cache = CacheConfig::new()
        .dir(dir.path())
        .open()
        .expect("the cache opens");
    (dir, AsyncCache::new(cache))
});

static UPSTREAM_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Asks the upstream at `upstream` for `city`'s forecast. Racing calls for
/// one city share one request; results are kept ten minutes.
#[cacheness::memoize(cache = CACHE.1, ttl = "10m", skip(upstream))]
async fn forecast(upstream: std::net::SocketAddr, city: String) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(format!("{city}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    Ok(line.trim_end().to_owned())
}

/// The upstream: answers each line with a made-up forecast, counting calls.
async fn upstream(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            UPSTREAM_CALLS.fetch_add(1, Ordering::SeqCst);
            let (read, mut write) = stream.into_split();
            let mut city = String::new();
            BufReader::new(read).read_line(&mut city).await?;
            let degrees = city.trim_end().len() as f64 * 2.5;
            write
                .write_all(format!("{degrees:.1} °C\n").as_bytes())
                .await
        });
    }
}

/// The service: one city per line in, its forecast out.
async fn service(listener: TcpListener, upstream: std::net::SocketAddr) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Some(city) = lines.next_line().await? {
                let answer = match forecast(upstream, city).await {
                    Ok(forecast) => forecast,
                    Err(error) => format!("error: {error}"),
                };
                write.write_all(format!("{answer}\n").as_bytes()).await?;
            }
            Ok::<(), std::io::Error>(())
        });
    }
}

/// A client: asks for each of `cities` in turn on one connection.
async fn ask(service: std::net::SocketAddr, cities: &[&str]) -> std::io::Result<Vec<String>> {
    let stream = TcpStream::connect(service).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut answers = Vec::new();
    for city in cities {
        write.write_all(format!("{city}\n").as_bytes()).await?;
        answers.push(lines.next_line().await?.unwrap_or_default());
    }
    Ok(answers)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream_listener.local_addr()?;
    tokio::spawn(upstream(upstream_listener));
    let service_listener = TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service_listener.local_addr()?;
    tokio::spawn(service(service_listener, upstream_addr));

    let cities = ["Lyon", "Nantes", "Strasbourg"];
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|client| {
            let asks: Vec<&str> = (0..10)
                .map(|n| cities[(client + n) % cities.len()])
                .collect();
            tokio::spawn(async move { ask(service_addr, &asks).await })
        })
        .collect();
    for client in clients {
        for answer in client.await?? {
            assert!(answer.ends_with("°C"), "{answer}");
        }
    }
    let calls = UPSTREAM_CALLS.load(Ordering::SeqCst);
    println!(
        "200 requests for {} cities in {:.1?}: {calls} upstream calls",
        cities.len(),
        started.elapsed()
    );
    assert_eq!(calls, cities.len(), "one upstream call per city");
    println!("Lyon: {}", ask(service_addr, &["Lyon"]).await?[0]);
    assert_eq!(
        UPSTREAM_CALLS.load(Ordering::SeqCst),
        cities.len(),
        "served from the cache"
    );
    Ok(())
}
