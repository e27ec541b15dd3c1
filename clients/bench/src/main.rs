//! `tsunagu-bench`: the load generator. Runs nine workloads against a Tsunagu server
//! (fan-out, many groups, idle connections, files, timeline paging, audit reports),
//! each next to a baseline measured in the same run, and prints a table of figures with
//! their ratios to the baselines, plus a JSON file. See `docs/performance.md`.
//!
//! ```text
//! cargo build --release -p tsunagu-server -p tsunagu-bench
//! target/release/tsunagu-bench --spawn --quick
//! target/release/tsunagu-bench --server http://127.0.0.1:8080 --admin-password … \
//!     --database data/tsunagu.db --server-pid 1234
//! ```

mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
