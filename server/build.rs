// Re-embed migrations when a file under migrations/ changes; and tell the test suites
// which halves cannot run on this machine, so that they show as *ignored* (with the
// reason) instead of passing without having run.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    for var in [
        "TSUNAGU_TEST_POSTGRES_URL",
        "TSUNAGU_TEST_REQUIRE_POSTGRES",
        "TSUNAGU_TEST_REQUIRE_S3",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rustc-check-cfg=cfg(tsunagu_no_postgres)");
    println!("cargo:rustc-check-cfg=cfg(tsunagu_no_s3)");
    let required = |var: &str| std::env::var(var).as_deref() == Ok("1");
    // Where a half is required (CI) it is never ignored: it runs, and fails loudly.
    if std::env::var_os("TSUNAGU_TEST_POSTGRES_URL").is_none()
        && !required("TSUNAGU_TEST_REQUIRE_POSTGRES")
    {
        println!("cargo:rustc-cfg=tsunagu_no_postgres");
    }
    let s3s_fs = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("s3s-fs").is_file()));
    if !s3s_fs && !required("TSUNAGU_TEST_REQUIRE_S3") {
        println!("cargo:rustc-cfg=tsunagu_no_s3");
    }
}
