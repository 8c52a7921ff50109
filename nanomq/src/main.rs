//! The `nanomq` binary; everything lives in [`nanomq::cli`].

/// Per-connection tokio blocks come from slabs; see [`nanomq::alloc`].
#[global_allocator]
static ALLOCATOR: nanomq::alloc::SlabAlloc = nanomq::alloc::SlabAlloc::new();

fn main() -> std::process::ExitCode {
    nanomq::cli::main()
}
