//! Placeholder: the end-to-end comparison (being written).
fn main() {}
