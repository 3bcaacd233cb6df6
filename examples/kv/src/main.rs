//! The kv example. Not built yet: it needs ix-runtime; until then it only says so.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("ix-kv: this example is not built yet (it needs ix-runtime); nothing to run");
    std::process::exit(2);
}
