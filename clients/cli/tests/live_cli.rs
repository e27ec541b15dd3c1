//! The messaging commands of the `tsunagu` CLI against a real server started in-process:
//! `post`, `groups`, `threads` and `tail`, for people and for scripts.
//!
//! Timeouts here are guards against hangs only; nothing waits for time to pass.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

#[allow(dead_code)]
mod kit;

use kit::{start_server, tsunagu, Server, ARRIVAL};
use tsunagu_client::protocol::ids::ThreadId;
use tsunagu_testkit::{two_nurses_in_a_group, USER_PASSWORD};

/// Signs `login` in with the CLI; returns the session file's path.
async fn cli_login(server: &Server, dir: &std::path::Path, login: &str) -> String {
    let session = dir.join(format!("{login}.json"));
    let session = session.to_str().unwrap().to_owned();
    let (code, out, err) = tsunagu(
        &[
            "login",
            "--server",
            &server.base,
            "--login",
            login,
            "--password-stdin",
            "--session-file",
            &session,
        ],
        Some(&format!("{USER_PASSWORD}\n")),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_then_groups_and_threads_work_for_people_and_scripts() {
    let server = start_server().await;
    let (_, _, group, main) = two_nurses_in_a_group(&server.app).await;
    let dir = tempfile::tempdir().unwrap();
    let session = cli_login(&server, dir.path(), "nurse.b").await;
    let group_arg = group.to_string();
    let main_arg = main.to_string();

    let (code, out, err) = tsunagu(
        &[
            "post",
            "--group",
            &group_arg,
            "血圧 128/76",
            "--session-file",
            &session,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Posted #1"), "{out}");

    // From standard input, with an idempotency key: running it twice posts once.
    for _ in 0..2 {
        let (code, out, err) = tsunagu(
            &[
                "post",
                "--json",
                "--thread",
                &main_arg,
                "--client-msg-id",
                "script-42",
                "-",
                "--session-file",
                &session,
            ],
            Some("服薬確認済み\n"),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let message: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(message["seq"], 2);
        assert_eq!(message["body"], "服薬確認済み");
        assert_eq!(message["client_msg_id"], "script-42");
    }

    let (code, out, err) = tsunagu(&["groups", "--json", "--session-file", &session], None).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let groups = list["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["id"], group_arg.as_str());
    assert_eq!(groups[0]["main_thread_id"], main_arg.as_str());

    let (code, out, _) = tsunagu(&["groups", "--session-file", &session], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&group_arg) && out.contains("訪問看護 連絡"),
        "{out}"
    );

    let (code, out, _) = tsunagu(
        &[
            "threads",
            "--group",
            &group_arg,
            "--json",
            "--session-file",
            &session,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["threads"][0]["id"], main_arg.as_str());
    assert_eq!(list["threads"][0]["last_seq"], 2);
    let (code, out, _) = tsunagu(
        &["threads", "--group", &group_arg, "--session-file", &session],
        None,
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("main timeline") && out.contains("last #2"),
        "{out}"
    );

    // Usage errors exit 2, refusals exit 1 with the server's code.
    let (code, _, _) = tsunagu(&["post", "no target", "--session-file", &session], None).await;
    assert_eq!(code, 2);
    let (code, _, _) = tsunagu(
        &[
            "post",
            "--thread",
            "not-a-uuid",
            "x",
            "--session-file",
            &session,
        ],
        None,
    )
    .await;
    assert_eq!(code, 2);
    let unknown = ThreadId::new().to_string();
    let (code, _, err) = tsunagu(
        &[
            "post",
            "--json",
            "--thread",
            &unknown,
            "x",
            "--session-file",
            &session,
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    let body: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Sends SIGINT, as Ctrl-C in a terminal does.
#[cfg(unix)]
async fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// Reads lines until one satisfies `want`; panics at the bound or at end of stream.
async fn line_where(
    lines: &mut tokio::io::Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>,
    want: impl Fn(&str) -> bool,
) -> String {
    tokio::time::timeout(ARRIVAL, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("output ended");
            if want(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the line appears within the bound")
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_messages_posted_after_it_starts_and_stops_on_ctrl_c() {
    let server = start_server().await;
    let (a, _, _, main) = two_nurses_in_a_group(&server.app).await;
    a.post_text(main, "before tail").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = cli_login(&server, dir.path(), "nurse.b").await;
    let main_arg = main.to_string();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"))
        .args([
            "tail",
            "--json",
            "--thread",
            &main_arg,
            "--session-file",
            &session,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let status = line_where(&mut stderr, |l| l.contains("\"connected\"")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["last_seq"], 1);

    a.post_text(main, "after tail started").await.unwrap();
    let line = line_where(&mut stdout, |_| true).await;
    let message: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(message["body"], "after tail started");
    assert_eq!(message["seq"], 2);

    interrupt(&child).await;
    let exit = tokio::time::timeout(ARRIVAL, child.wait())
        .await
        .expect("tail stops on Ctrl-C")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // The earlier message was not printed: tail shows what is new.
    assert!(stdout.next_line().await.unwrap().is_none());

    // Human output from a given seq: the history first, each message once.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagu"))
        .args([
            "tail",
            "--thread",
            &main_arg,
            "--from-seq",
            "0",
            "--session-file",
            &session,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = line_where(&mut stdout, |_| true).await;
    assert!(
        first.starts_with("#1 ") && first.ends_with("看護師 nurse.a: before tail"),
        "{first}"
    );
    let second = line_where(&mut stdout, |_| true).await;
    assert!(second.starts_with("#2 "), "{second}");
    interrupt(&child).await;
    let exit = tokio::time::timeout(ARRIVAL, child.wait())
        .await
        .expect("tail stops on Ctrl-C")
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    // A thread the user cannot see: refused, exit 1.
    let other = ThreadId::new().to_string();
    let (code, _, err) = tsunagu(
        &["tail", "--thread", &other, "--session-file", &session],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
}
