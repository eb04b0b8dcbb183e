//! Baseline: same program shape, no database crate (writes a file instead).
fn main() {
    let path = std::env::temp_dir().join("cc-baseline.txt");
    std::fs::write(&path, b"room-00 1 hello").unwrap();
    println!("{}", std::fs::read_to_string(&path).unwrap());
}
