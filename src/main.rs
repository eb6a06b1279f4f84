fn main() -> std::process::ExitCode {
    deploy_lock::main(std::env::args_os())
}
