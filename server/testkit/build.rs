// Which halves of the suites cannot run on this machine, so that the kit's test macros
// mark them *ignored* (with the reason) instead of letting them pass without having
// run. The macros are defined here, so the decision is made once, in this crate, and
// every suite that uses the kit gets it without a build script of its own.
fn main() {
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
    println!("cargo:rustc-check-cfg=cfg(tsunagu_no_nats)");
    let required = |var: &str| std::env::var(var).as_deref() == Ok("1");
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    // Where a half is required (CI) it is never ignored: it runs, and fails loudly.
    let postgres_required = required("TSUNAGU_TEST_REQUIRE_POSTGRES");
    if std::env::var_os("TSUNAGU_TEST_POSTGRES_URL").is_none() && !postgres_required {
        println!("cargo:rustc-cfg=tsunagu_no_postgres");
    }
    if !on_path("s3s-fs") && !required("TSUNAGU_TEST_REQUIRE_S3") {
        println!("cargo:rustc-cfg=tsunagu_no_s3");
    }
    // The cluster tests need PostgreSQL and NATS: requiring PostgreSQL requires them.
    let nats = on_path("nats-server")
        || ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .any(|p| std::path::Path::new(p).is_file());
    if !nats && !postgres_required {
        println!("cargo:rustc-cfg=tsunagu_no_nats");
    }
}
