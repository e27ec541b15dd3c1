// Re-embed migrations when a file under migrations/ changes. (Which test halves can run
// here is the test kit's to decide: server/testkit/build.rs.)
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
