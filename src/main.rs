fn main() { print!("{}", seatkeeper::crdgen::crds_yaml()); }
