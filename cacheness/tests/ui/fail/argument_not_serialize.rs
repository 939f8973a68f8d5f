struct Connection;

#[cacheness::memoize]
fn users(conn: &Connection, id: u32) -> Vec<String> {
    let _ = (conn, id);
    Vec::new()
}

fn main() {}
