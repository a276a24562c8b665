//! Links with cortex-m-rt's script (embassy-stm32's `memory-x` feature supplies the chip's memory.x).
fn main() {
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
