fn main() {
    std::process::exit(seatkeeper::cli::main());
}
