//! `#[memoize]` misuses are compile errors that say what to do, and every
//! option compiles (`tests/ui/`).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
