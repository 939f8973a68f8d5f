#[cacheness::memoize(cache = "cache")]
fn users(id: u32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
