fn main() {
    std::process::exit(deploy_lock::app::main_with_args(std::env::args_os()));
}
