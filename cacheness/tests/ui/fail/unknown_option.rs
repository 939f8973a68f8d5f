#[cacheness::memoize(expire = "1h")]
fn users(id: u32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
