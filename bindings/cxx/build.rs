// Generates and compiles the C++ side of the bridge; the generated header is
// target/cxxbridge/saeplug-cxx/src/lib.rs.h (with rust/cxx.h beside it).
fn main() {
    cxx_build::bridge("src/lib.rs")
        .std("c++17")
        .compile("saeplug_cxx_bridge");
    println!("cargo:rerun-if-changed=src/lib.rs");
}
