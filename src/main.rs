//! The `hato` binary: everything lives in the library; this only picks the allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hato::cli::main()
}
