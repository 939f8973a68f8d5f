#[cacheness::memoize(cache_errors = "return")]
fn users(id: u32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
