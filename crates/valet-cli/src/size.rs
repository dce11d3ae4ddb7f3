//! Sizes and rates on the command line (`5MiB`, `8 MiB`, `1.5G`): the engine's rules, which
//! policy files follow too.

pub use valet_engine::size::parse_bytes;
