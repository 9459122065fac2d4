fn main() -> std::process::ExitCode {
    flowpol::cli::main()
}
