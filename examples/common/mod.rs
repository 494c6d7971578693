//! What the examples share (not an example itself: Cargo builds only `examples/*.rs` and
//! `examples/*/main.rs`).

#![allow(dead_code)]

use std::path::PathBuf;

/// Prints a line to stdout; a closed stdout (`… | head`) ends the program quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// The bundled assets of the source tree (photos, class names).
pub fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}
