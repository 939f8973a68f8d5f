struct Scorer;

impl Scorer {
    #[cacheness::memoize]
    fn score(&self, n: u32) -> u32 {
        n
    }
}

fn main() {}
