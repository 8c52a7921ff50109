//! The `nanomq` binary; everything lives in [`nanomq::cli`].

fn main() -> std::process::ExitCode {
    nanomq::cli::main()
}
