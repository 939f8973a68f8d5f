#[cacheness::memoize(skip_none)]
fn users(id: u32) -> Vec<String> {
    vec![id.to_string()]
}

fn main() {}
