//! Memory under a flood of wrong passwords: the real `herald serve` process, its resident
//! memory read from `/proc`.

use crate::helpers::*;

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Each Argon2 check needs 19 MiB. Before, the hashes ran on whichever blocking thread was
/// free and each thread's allocator arena kept its memory: 1,200 wrong sign-ins left about
/// 1 GiB resident. The gate's permits now each own their working memory, so after any
/// flood the process holds its baseline plus at most that memory per permit.
#[tokio::test]
async fn a_flood_of_wrong_sign_ins_leaves_memory_within_the_gates_bound() {
    const ADDRESSES: u8 = 12;
    // The throttle lets each address fail 20 times before it must wait: every sign-in
    // here is a real hash.
    const PER_ADDRESS: usize = 18;
    // A few at a time, so that the gate checks them rather than sending most away.
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(6));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = herald_cmd(dir.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "herald=info");
    let mut serve = LoggedServe::spawn(cmd);
    let base = serve.base_url();
    wait_ready(&base).await;
    let pid = serve.pid();
    let sign_in = |client: reqwest::Client, user: String| {
        let url = format!("{base}/api/v1/tokens");
        async move {
            client
                .post(url)
                .basic_auth(user, Some("not-the-password"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    // The baseline includes the first hash and whatever a request costs.
    assert_eq!(
        sign_in(reqwest::Client::new(), "warm".into()).await,
        401,
        "an unknown user is refused"
    );
    let baseline = rss(pid);
    let mut tasks = Vec::new();
    for a in 0..ADDRESSES {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 1, a + 1]))
            .build()
            .unwrap();
        for i in 0..PER_ADDRESS {
            let attempt = sign_in(client.clone(), format!("guess-{a}-{i}"));
            let in_flight = in_flight.clone();
            tasks.push(tokio::spawn(async move {
                let _place = in_flight.acquire_owned().await.unwrap();
                attempt.await
            }));
        }
    }
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            401 => refused += 1,
            // The gate's 503 when its permits stay busy too long: no hash ran.
            503 => {}
            other => panic!("a wrong sign-in got {other}"),
        }
    }
    assert!(
        refused >= 200,
        "only {refused} sign-ins were checked: the flood did not happen"
    );
    // Every answer is in, so every hash is done: what is resident now stays.
    let after = rss(pid);
    let permits = herald::auth::gate::MAX_PERMITS as u64;
    let bound = baseline + permits * 19 * 1024 * 1024 + 32 * 1024 * 1024;
    assert!(
        after <= bound,
        "resident memory {} MiB after {refused} wrong sign-ins, from {} MiB: more than the \
         gate's {permits} permits of 19 MiB and 32 MiB of slack",
        after >> 20,
        baseline >> 20
    );
    serve.stop();
}
